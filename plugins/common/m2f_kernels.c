/* The runtime of m2f's ahead-of-time compiled kernels: see m2f_kernels.h. */
#include "m2f_kernels.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

typedef CUresult (*cuInit_t)(unsigned int);
typedef CUresult (*cuCtxGetCurrent_t)(CUcontext*);
typedef CUresult (*cuCtxGetDevice_t)(CUdevice*);
typedef CUresult (*cuDeviceGetAttribute_t)(int*, CUdevice_attribute, CUdevice);
typedef CUresult (*cuModuleLoadData_t)(CUmodule*, const void*);
typedef CUresult (*cuModuleGetFunction_t)(CUfunction*, CUmodule, const char*);
typedef CUresult (*cuFuncSetAttribute_t)(CUfunction, CUfunction_attribute, int);
typedef CUresult (*cuLaunchKernel_t)(CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,
                                     unsigned int, unsigned int, unsigned int, CUstream, void**, void**);
typedef CUresult (*cuGetErrorString_t)(CUresult, const char**);
typedef CUresult (*cuCtxGetId_t)(CUcontext, unsigned long long*);

static struct {
    void* handle;
    CUresult status;
    char why[256];
    cuCtxGetCurrent_t ctxGetCurrent;
    cuCtxGetDevice_t ctxGetDevice;
    cuDeviceGetAttribute_t deviceGetAttribute;
    cuModuleLoadData_t moduleLoadData;
    cuModuleGetFunction_t moduleGetFunction;
    cuFuncSetAttribute_t funcSetAttribute;
    cuLaunchKernel_t launchKernel;
    cuGetErrorString_t getErrorString;
    cuCtxGetId_t ctxGetId; /* NULL before CUDA 12 */
} driver;

static pthread_once_t driver_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread char last_error[512];

static void set_error(const char* message) {
    snprintf(last_error, sizeof last_error, "%s", message);
}

static void load_driver(void) {
    cuInit_t init;
    driver.handle = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!driver.handle) {
        const char* why = dlerror();
        snprintf(driver.why, sizeof driver.why,
                 "the CUDA driver (libcuda.so.1) could not be loaded (%s): is an NVIDIA GPU and driver present?",
                 why ? why : "not found");
        driver.status = CUDA_ERROR_NOT_INITIALIZED;
        return;
    }
#define M2F_RESOLVE(field, type, symbol)                                                                   \
    driver.field = (type)dlsym(driver.handle, symbol);                                                       \
    if (!driver.field) {                                                                                     \
        snprintf(driver.why, sizeof driver.why, "libcuda.so.1 has no %s: the driver is too old", symbol);   \
        driver.status = CUDA_ERROR_NOT_INITIALIZED;                                                          \
        return;                                                                                              \
    }
    M2F_RESOLVE(ctxGetCurrent, cuCtxGetCurrent_t, "cuCtxGetCurrent")
    M2F_RESOLVE(ctxGetDevice, cuCtxGetDevice_t, "cuCtxGetDevice")
    M2F_RESOLVE(deviceGetAttribute, cuDeviceGetAttribute_t, "cuDeviceGetAttribute")
    M2F_RESOLVE(moduleLoadData, cuModuleLoadData_t, "cuModuleLoadData")
    M2F_RESOLVE(moduleGetFunction, cuModuleGetFunction_t, "cuModuleGetFunction")
    M2F_RESOLVE(funcSetAttribute, cuFuncSetAttribute_t, "cuFuncSetAttribute")
    M2F_RESOLVE(launchKernel, cuLaunchKernel_t, "cuLaunchKernel")
    M2F_RESOLVE(getErrorString, cuGetErrorString_t, "cuGetErrorString")
#undef M2F_RESOLVE
    driver.ctxGetId = (cuCtxGetId_t)dlsym(driver.handle, "cuCtxGetId");
    init = (cuInit_t)dlsym(driver.handle, "cuInit");
    driver.status = init ? init(0) : CUDA_ERROR_NOT_INITIALIZED;
    if (driver.status != CUDA_SUCCESS)
        snprintf(driver.why, sizeof driver.why, "cuInit failed with CUDA error %d: no usable GPU", (int)driver.status);
}

static CUresult driver_ready(void) {
    pthread_once(&driver_once, load_driver);
    if (driver.status != CUDA_SUCCESS) set_error(driver.why);
    return driver.status;
}

static void cuda_error(const char* what, CUresult status) {
    const char* text = NULL;
    char message[512];
    if (driver.getErrorString) driver.getErrorString(status, &text);
    snprintf(message, sizeof message, "%s failed: %s (CUDA error %d)", what, text ? text : "unknown error",
             (int)status);
    set_error(message);
}

const char* m2f_kernels_last_error(void) {
    return last_error;
}

int m2f_kernels_device_arch(void) {
    CUdevice device;
    CUresult status;
    int major = 0, minor = 0;
    if (driver_ready() != CUDA_SUCCESS) return -1;
    if ((status = driver.ctxGetDevice(&device)) != CUDA_SUCCESS ||
        (status = driver.deviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)) !=
            CUDA_SUCCESS ||
        (status = driver.deviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)) !=
            CUDA_SUCCESS) {
        cuda_error("reading the GPU's compute capability", status);
        return -1;
    }
    return major * 10 + minor;
}

/* The image for a device of compute capability `arch`: a cubin of the same major version and the highest minor
 * not above the device's; else the PTX if the device is at least its architecture; else NULL. */
static const m2f_image* choose_image(const m2f_kernel* kernel, int arch) {
    const m2f_image* best = NULL;
    int i;
    for (i = 0; i < kernel->n_cubins; ++i) {
        const m2f_image* c = &kernel->cubins[i];
        if (c->arch / 10 == arch / 10 && c->arch <= arch && (!best || c->arch > best->arch)) best = c;
    }
    if (best) return best;
    if (kernel->ptx.data && arch >= kernel->ptx.arch) return &kernel->ptx;
    return NULL;
}

static void no_image_error(const m2f_kernel* kernel, int arch) {
    char built[160] = "";
    char message[512];
    int i;
    size_t used = 0;
    for (i = 0; i < kernel->n_cubins && used + 8 < sizeof built; ++i)
        used += (size_t)snprintf(built + used, sizeof built - used, "%ssm_%d", i ? ", " : "", kernel->cubins[i].arch);
    snprintf(message, sizeof message,
             "no %s kernel for this GPU (sm_%d): the library was built for %s with PTX for sm_%d and newer; rebuild "
             "it here with: m2f plugins build --arch %d", kernel->config, arch, built, kernel->ptx.arch, arch);
    set_error(message);
}

CUresult m2f_kernel_get(m2f_kernel* kernel, const m2f_loaded** loaded) {
    CUcontext context;
    unsigned long long context_id = 0;
    CUmodule module;
    CUfunction function;
    CUresult status;
    const m2f_image* image;
    int i, arch;
    if ((status = driver_ready()) != CUDA_SUCCESS) return status;
    if ((status = driver.ctxGetCurrent(&context)) != CUDA_SUCCESS || !context) {
        set_error("no current CUDA context: launch from a thread with a context (TensorRT makes one)");
        return status != CUDA_SUCCESS ? status : CUDA_ERROR_INVALID_CONTEXT;
    }
    if (driver.ctxGetId && (status = driver.ctxGetId(context, &context_id)) != CUDA_SUCCESS) {
        cuda_error("reading the CUDA context's id", status);
        return status;
    }
    pthread_mutex_lock(&cache_lock);
    for (i = 0; i < kernel->n_loaded; ++i) {
        if (kernel->loaded[i].context == context && kernel->loaded[i].context_id == context_id) {
            *loaded = &kernel->loaded[i];
            pthread_mutex_unlock(&cache_lock);
            return CUDA_SUCCESS;
        }
    }
    arch = m2f_kernels_device_arch();
    image = arch < 0 ? NULL : choose_image(kernel, arch);
    if (arch < 0) {
        status = CUDA_ERROR_INVALID_DEVICE; /* m2f_kernels_device_arch said why */
    } else if (!image) {
        no_image_error(kernel, arch);
        status = CUDA_ERROR_NO_BINARY_FOR_GPU;
    } else if (kernel->n_loaded == M2F_MAX_CONTEXTS) {
        set_error("more CUDA contexts than the kernel cache holds (16); use fewer execution contexts per process");
        status = CUDA_ERROR_OUT_OF_MEMORY;
    } else if ((status = driver.moduleLoadData(&module, image->data)) != CUDA_SUCCESS) {
        cuda_error("loading the kernel module", status);
    } else if ((status = driver.moduleGetFunction(&function, module, kernel->entry)) != CUDA_SUCCESS) {
        cuda_error("finding the kernel in its module", status);
    } else if (image->shared > 49152 &&
               (status = driver.funcSetAttribute(function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                                 (int)image->shared)) != CUDA_SUCCESS) {
        cuda_error("granting the kernel its shared memory", status);
    } else {
        kernel->loaded[kernel->n_loaded].context = context;
        kernel->loaded[kernel->n_loaded].context_id = context_id;
        kernel->loaded[kernel->n_loaded].module = module;
        kernel->loaded[kernel->n_loaded].function = function;
        kernel->loaded[kernel->n_loaded].shared = image->shared;
        *loaded = &kernel->loaded[kernel->n_loaded];
        kernel->n_loaded += 1;
    }
    pthread_mutex_unlock(&cache_lock);
    return status;
}

CUresult m2f_kernel_launch(const m2f_kernel* kernel, const m2f_loaded* loaded, unsigned int gx, unsigned int gy,
                           unsigned int gz, CUstream stream, void** args) {
    CUresult status;
    if (gx == 0 || gy == 0 || gz == 0) return CUDA_SUCCESS;
    status = driver.launchKernel(loaded->function, gx, gy, gz, kernel->threads, 1, 1, loaded->shared, stream, args,
                                 NULL);
    if (status != CUDA_SUCCESS) cuda_error("launching the kernel", status);
    return status;
}
