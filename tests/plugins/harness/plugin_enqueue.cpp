/*
 * Runs one plugin's enqueue on a GPU without a TensorRT library: dlopen libm2f_plugins.so and libcuda.so.1, create
 * the plugin through its creator (as TensorRT does at runtime), copy the inputs to device buffers, call
 * onShapeChange and enqueue, copy the output back. tests/plugins/test_plugin_enqueue_gpu.py writes the inputs and
 * the spec, and compares the output with the float64 references.
 *
 * Usage: plugin_enqueue LIBRARY SPEC
 *   SPEC lines:  plugin <name> [<field> <int>]...
 *                input|output <float|half|int32> <rank> <d0> ... <file>   (raw little-endian data; an output's file
 *                                                                          is written)
 *                runs <n>                                                 (timed enqueues after the first)
 * Prints "fact enqueue <status>", "fact median_ms <ms>" and exits non-zero on any failure.
 */
#include <NvInferRuntime.h>
#include <cuda.h>

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{
struct Driver
{
    CUresult (*init)(unsigned int);
    CUresult (*deviceGet)(CUdevice*, int);
    CUresult (*primaryCtxRetain)(CUcontext*, CUdevice);
    CUresult (*ctxSetCurrent)(CUcontext);
    CUresult (*ctxSynchronize)();
    CUresult (*memAlloc)(CUdeviceptr*, size_t);
    CUresult (*memFree)(CUdeviceptr);
    CUresult (*memcpyHtoD)(CUdeviceptr, void const*, size_t);
    CUresult (*memcpyDtoH)(void*, CUdeviceptr, size_t);
};

template <typename F>
bool resolve(void* lib, char const* name, F& f)
{
    f = reinterpret_cast<F>(dlsym(lib, name));
    if (f == nullptr)
    {
        std::fprintf(stderr, "libcuda.so.1 has no %s\n", name);
    }
    return f != nullptr;
}

bool loadDriver(Driver& d)
{
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr)
    {
        std::fprintf(stderr, "cannot load libcuda.so.1: %s\n", dlerror());
        return false;
    }
    return resolve(lib, "cuInit", d.init) && resolve(lib, "cuDeviceGet", d.deviceGet)
        && resolve(lib, "cuDevicePrimaryCtxRetain", d.primaryCtxRetain)
        && resolve(lib, "cuCtxSetCurrent", d.ctxSetCurrent) && resolve(lib, "cuCtxSynchronize", d.ctxSynchronize)
        && resolve(lib, "cuMemAlloc_v2", d.memAlloc) && resolve(lib, "cuMemFree_v2", d.memFree)
        && resolve(lib, "cuMemcpyHtoD_v2", d.memcpyHtoD) && resolve(lib, "cuMemcpyDtoH_v2", d.memcpyDtoH);
}

struct Tensor
{
    PluginTensorDesc desc{};
    std::string file;
    std::vector<char> host;
    CUdeviceptr device = 0;

    size_t bytes() const
    {
        size_t n = desc.type == DataType::kHALF ? 2 : 4;
        for (int32_t i = 0; i < desc.dims.nbDims; ++i)
        {
            n *= static_cast<size_t>(desc.dims.d[i]);
        }
        return n;
    }
};

bool parseTensor(std::istringstream& line, Tensor& t)
{
    std::string type;
    line >> type >> t.desc.dims.nbDims;
    t.desc.type = type == "half" ? DataType::kHALF : type == "int32" ? DataType::kINT32 : DataType::kFLOAT;
    t.desc.format = TensorFormat::kLINEAR;
    t.desc.scale = 1.0F;
    for (int32_t i = 0; i < t.desc.dims.nbDims; ++i)
    {
        line >> t.desc.dims.d[i];
    }
    line >> t.file;
    return !line.fail();
}

IPluginCreatorV3One* findCreator(void* library, std::string const& name)
{
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(library, "getCreators"));
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators != nullptr ? getCreators(n) : nullptr;
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
        if (std::string(creators[i]->getInterfaceInfo().kind) == "PLUGIN CREATOR_V3ONE" && name == c->getPluginName())
        {
            return c;
        }
    }
    return nullptr;
}

int fail(char const* what)
{
    std::fprintf(stderr, "plugin_enqueue: %s\n", what);
    return 1;
}
} // namespace

int main(int argc, char** argv)
{
    if (argc != 3)
    {
        return fail("usage: plugin_enqueue LIBRARY SPEC");
    }
    std::string name;
    std::vector<std::string> fieldNames;
    std::vector<int32_t> fieldValues;
    std::vector<Tensor> inputs, outputs;
    int runs = 1;
    std::ifstream spec(argv[2]);
    for (std::string text; std::getline(spec, text);)
    {
        std::istringstream line(text);
        std::string kind;
        line >> kind;
        if (kind == "plugin")
        {
            line >> name;
            std::string field;
            int32_t value = 0;
            while (line >> field >> value)
            {
                fieldNames.push_back(field);
                fieldValues.push_back(value);
            }
        }
        else if (kind == "input" || kind == "output")
        {
            Tensor t;
            if (!parseTensor(line, t))
            {
                return fail("bad tensor line in the spec");
            }
            (kind == "input" ? inputs : outputs).push_back(t);
        }
        else if (kind == "runs")
        {
            line >> runs;
        }
    }
    Driver cu{};
    CUdevice device = 0;
    CUcontext context = nullptr;
    if (!loadDriver(cu) || cu.init(0) != CUDA_SUCCESS || cu.deviceGet(&device, 0) != CUDA_SUCCESS
        || cu.primaryCtxRetain(&context, device) != CUDA_SUCCESS || cu.ctxSetCurrent(context) != CUDA_SUCCESS)
    {
        return fail("no CUDA device");
    }
    void* library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    IPluginCreatorV3One* creator = library != nullptr ? findCreator(library, name) : nullptr;
    if (creator == nullptr)
    {
        return fail("the library has no creator of that name");
    }
    std::vector<PluginField> fields;
    for (size_t i = 0; i < fieldNames.size(); ++i)
    {
        fields.emplace_back(fieldNames[i].c_str(), &fieldValues[i], PluginFieldType::kINT32, 1);
    }
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    IPluginV3* plugin = creator->createPlugin("enqueue-test", &fc, TensorRTPhase::kRUNTIME);
    auto* runtime = plugin != nullptr
        ? static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME))
        : nullptr;
    if (runtime == nullptr)
    {
        return fail("createPlugin failed");
    }
    std::vector<PluginTensorDesc> inDesc, outDesc;
    std::vector<void const*> inPtr;
    std::vector<void*> outPtr;
    for (Tensor& t : inputs)
    {
        std::ifstream f(t.file, std::ios::binary);
        t.host.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
        if (t.host.size() != t.bytes() || cu.memAlloc(&t.device, t.bytes()) != CUDA_SUCCESS
            || cu.memcpyHtoD(t.device, t.host.data(), t.bytes()) != CUDA_SUCCESS)
        {
            return fail(("input " + t.file + " has the wrong size or could not be copied").c_str());
        }
        inDesc.push_back(t.desc);
        inPtr.push_back(reinterpret_cast<void const*>(t.device));
    }
    for (Tensor& t : outputs)
    {
        t.host.resize(t.bytes());
        if (cu.memAlloc(&t.device, t.bytes()) != CUDA_SUCCESS)
        {
            return fail("cannot allocate the output");
        }
        outDesc.push_back(t.desc);
        outPtr.push_back(reinterpret_cast<void*>(t.device));
    }
    int32_t const nIn = static_cast<int32_t>(inDesc.size());
    int32_t const nOut = static_cast<int32_t>(outDesc.size());
    runtime->onShapeChange(inDesc.data(), nIn, outDesc.data(), nOut);
    int32_t status = runtime->enqueue(inDesc.data(), outDesc.data(), inPtr.data(), outPtr.data(), nullptr, nullptr);
    bool synced = cu.ctxSynchronize() == CUDA_SUCCESS;
    std::printf("fact enqueue %d\n", status);
    std::vector<double> times;
    for (int i = 1; i < runs && status == 0 && synced; ++i)
    {
        auto start = std::chrono::steady_clock::now();
        status = runtime->enqueue(inDesc.data(), outDesc.data(), inPtr.data(), outPtr.data(), nullptr, nullptr);
        synced = cu.ctxSynchronize() == CUDA_SUCCESS;
        times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    if (!times.empty())
    {
        std::sort(times.begin(), times.end());
        std::printf("fact median_ms %.4f\n", times[times.size() / 2]);
    }
    for (Tensor& t : outputs)
    {
        if (cu.memcpyDtoH(t.host.data(), t.device, t.bytes()) != CUDA_SUCCESS)
        {
            return fail("cannot copy the output back");
        }
        std::ofstream(t.file, std::ios::binary).write(t.host.data(), static_cast<std::streamsize>(t.host.size()));
    }
    for (Tensor& t : inputs)
    {
        cu.memFree(t.device);
    }
    for (Tensor& t : outputs)
    {
        cu.memFree(t.device);
    }
    delete plugin;
    return status == 0 && synced ? 0 : 1;
}
