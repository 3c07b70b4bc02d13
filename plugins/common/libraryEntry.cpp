/*
 * How TensorRT finds the plugins, whichever way a host loads the library, without linking libnvinfer
 * (docs/tensorrt.md, "Loading m2f's plugin library"):
 *
 * - Hosts that ask the library: IPluginRegistry::loadLibrary (m2f build and the m2f runtime, trtexec
 *   --dynamicPlugins, trt.get_plugin_registry().load_library) call the exported getCreators and register what it
 *   returns. The library registers nothing itself then: its load-time constructor sees TensorRT's libnvinfer on the
 *   call stack (loadLibrary is the one opening it) and leaves the registration to the host, so it never calls into
 *   the registry while loadLibrary holds it.
 * - Hosts that only open it (trtexec --staticPlugins, polygraphy --plugins and other ctypes.CDLL, Triton's
 *   `--backend-config=tensorrt,plugins=...`): the load-time constructor registers both creators with the registry of
 *   the TensorRT already in the process. It finds that TensorRT by its soname, libnvinfer.so.<major>, with
 *   RTLD_NOLOAD: that also finds a libnvinfer loaded privately (RTLD_LOCAL, as Python's bindings and Triton's TensorRT
 *   backend load it), which a global symbol lookup cannot see.
 * - A library opened before TensorRT is (LD_PRELOAD) or where there is none (inspection, the test harness)
 *   registers nothing.
 * If a host loads the library both ways in one process, the plugins registered when it was first opened stay, and
 * getCreators hands loadLibrary no creators (it refuses ones already registered, and withdrawing them would mean
 * calling into the registry from inside loadLibrary).
 *
 * Both paths refuse, with one sentence, a TensorRT of another major version than the headers the library was built
 * with (its plugin and logger ABI differ). Messages go through the logger TensorRT hands over (setLoggerFinder).
 */
#include "maskedAttentionPlugin.h"
#include "msDeformAttnPlugin.h"

#include <dlfcn.h>
#include <execinfo.h>

#include <cstdio>
#include <cstring>
#include <utility>

#ifndef M2F_PLUGINS_ARCHS
#define M2F_PLUGINS_ARCHS "unknown"
#endif
#define M2F_STRINGIFY_(x) #x
#define M2F_STRINGIFY(x) M2F_STRINGIFY_(x)

using namespace nvinfer1;

namespace
{
// Read by m2f (not exported): which TensorRT headers and GPU architectures this build used.
__attribute__((used)) char const kBUILD_INFO[] = "M2F_PLUGINS_BUILD tensorrt=" M2F_STRINGIFY(NV_TENSORRT_MAJOR) "."
    M2F_STRINGIFY(NV_TENSORRT_MINOR) "." M2F_STRINGIFY(NV_TENSORRT_PATCH) " archs=" M2F_PLUGINS_ARCHS;

constexpr char const* kLIBRARY = "m2f plugins";
constexpr int32_t kOLDEST_MAJOR = 8; // the TensorRT majors whose libnvinfer.so.<major> is looked for
constexpr int32_t kNEWEST_MAJOR = 13;
constexpr int32_t kNB_CREATORS = 2;
constexpr int kMAX_FRAMES = 64; // loadLibrary -> dlopen -> the constructor is about a dozen frames deep

IPluginCreatorInterface* const* creators()
{
    static m2f::plugin::MSDeformAttnPluginCreator msDeformAttn;
    static m2f::plugin::MaskedAttentionPluginCreator maskedAttention;
    static IPluginCreatorInterface* const all[kNB_CREATORS] = {&msDeformAttn, &maskedAttention};
    return all;
}

//! The TensorRT already in this process: its major version and a handle to release with dlclose, or {0, nullptr}.
//! Found by soname with RTLD_NOLOAD, which also finds a libnvinfer another library loaded privately (RTLD_LOCAL).
std::pair<int32_t, void*> residentTensorRT()
{
    for (int32_t major = kOLDEST_MAJOR; major <= kNEWEST_MAJOR; ++major)
    {
        char soname[32];
        std::snprintf(soname, sizeof soname, "libnvinfer.so.%d", static_cast<int>(major));
        if (void* handle = dlopen(soname, RTLD_NOW | RTLD_NOLOAD))
        {
            using GetVersion = int32_t (*)();
            auto const getVersion = reinterpret_cast<GetVersion>(dlsym(handle, "getInferLibVersion"));
            return {getVersion != nullptr ? getVersion() / 10000 : major, handle};
        }
    }
    return {0, nullptr};
}

//! False (with one sentence) when the process runs a TensorRT of another major version than this library's headers.
bool runtimeMatchesBuild(int32_t major)
{
    if (major == NV_TENSORRT_MAJOR)
    {
        return true;
    }
    char line[400];
    std::snprintf(line, sizeof line,
        "this library was built against TensorRT %d headers but the process runs TensorRT %d; rebuild it against "
        "this TensorRT: m2f plugins build --tensorrt-include <TensorRT include dir>",
        NV_TENSORRT_MAJOR, static_cast<int>(major));
    m2f::plugin::reportError(kLIBRARY, line);
    return false;
}

//! Whether TensorRT's libnvinfer is on the call stack: its loadLibrary is opening this library and will register
//! the creators from getCreators itself.
bool openedByTensorRT()
{
    void* frames[kMAX_FRAMES];
    int const depth = backtrace(frames, kMAX_FRAMES);
    for (int i = 0; i < depth; ++i)
    {
        Dl_info info{};
        if (dladdr(frames[i], &info) == 0 || info.dli_fname == nullptr)
        {
            continue;
        }
        char const* base = std::strrchr(info.dli_fname, '/');
        base = base != nullptr ? base + 1 : info.dli_fname;
        if (std::strncmp(base, "libnvinfer.so", std::strlen("libnvinfer.so")) == 0)
        {
            return true;
        }
    }
    return false;
}

//! Whether the load-time constructor registered the creators.
bool gSelfRegistered = false;

__attribute__((constructor)) void registerWhenOpenedByAHost()
{
    auto const [major, nvinfer] = residentTensorRT();
    if (nvinfer == nullptr)
    {
        return;
    }
    using GetRegistry = IPluginRegistry* (*) ();
    auto const getRegistry = reinterpret_cast<GetRegistry>(dlsym(nvinfer, "getPluginRegistry"));
    if (getRegistry != nullptr && !openedByTensorRT() && runtimeMatchesBuild(major))
    {
        IPluginRegistry* registry = getRegistry();
        bool registered = registry != nullptr;
        for (int32_t i = 0; registered && i < kNB_CREATORS; ++i)
        {
            registered = registry->registerCreator(*creators()[i], m2f::plugin::kNAMESPACE);
        }
        if (!registered && registry != nullptr)
        {
            m2f::plugin::reportError(kLIBRARY, "TensorRT refused to register the plugins (are they registered "
                                               "already, from another copy of this library?)");
        }
        gSelfRegistered = registered;
    }
    dlclose(nvinfer); // the handle only counted a reference; TensorRT stays loaded by whoever loaded it
}
} // namespace

extern "C" __attribute__((visibility("default"))) IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    nbCreators = 0;
    try
    {
        auto const [major, nvinfer] = residentTensorRT();
        if (nvinfer != nullptr)
        {
            dlclose(nvinfer);
            if (!runtimeMatchesBuild(major))
            {
                return nullptr;
            }
        }
        IPluginCreatorInterface* const* all = creators();
        // registered already when the library was opened: loadLibrary gets none (it refuses duplicates)
        nbCreators = gSelfRegistered ? 0 : kNB_CREATORS;
        return all;
    }
    catch (...)
    {
        m2f::plugin::reportError(kLIBRARY, "could not create the plugin creators");
        return nullptr;
    }
}

//! TensorRT hands over its logger finder; the plugins' messages go to the logger it finds (per calling thread).
//! The library is built per TensorRT major version, so the ILoggerFinder it calls has that version's ABI: a finder
//! from a TensorRT of another major (whose ILoggerFinder is laid out differently) is never called, and messages go to
//! stderr instead.
extern "C" __attribute__((visibility("default"))) void setLoggerFinder(ILoggerFinder* finder)
{
    auto const [major, nvinfer] = residentTensorRT();
    if (nvinfer != nullptr)
    {
        dlclose(nvinfer);
    }
    m2f::plugin::setLoggerFinder(nvinfer == nullptr || major == NV_TENSORRT_MAJOR ? finder : nullptr);
}
