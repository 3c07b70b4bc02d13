/*
 * How TensorRT finds the plugins, whichever way the library is loaded, without linking libnvinfer:
 *
 * - IPluginRegistry::loadLibrary (trtexec --dynamicPlugins, m2f's runner, trt.get_plugin_registry().load_library):
 *   TensorRT calls the exported getCreators and registers what it returns.
 * - A plain dlopen into a process that already runs TensorRT (trtexec --staticPlugins, polygraphy --plugins,
 *   ctypes.CDLL): a load-time constructor finds TensorRT's getPluginRegistry with dlsym and registers the creators
 *   itself. If loadLibrary later loads the same library, getCreators first withdraws that registration, since
 *   loadLibrary refuses creators that are already registered.
 * - Without TensorRT in the process (inspection, the test harness), nothing is registered.
 *
 * Both paths refuse (one sentence on stderr, no creators) a TensorRT of another major version than the headers the
 * library was built with. TensorRT's logger is never used (its ABI changed in TensorRT 11).
 */
#include "maskedAttentionPlugin.h"
#include "msDeformAttnPlugin.h"

#include <dlfcn.h>

#include <cstdio>

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

constexpr int32_t kNB_CREATORS = 2;

IPluginCreatorInterface* const* creators()
{
    static m2f::plugin::MSDeformAttnPluginCreator msDeformAttn;
    static m2f::plugin::MaskedAttentionPluginCreator maskedAttention;
    static IPluginCreatorInterface* const all[kNB_CREATORS] = {&msDeformAttn, &maskedAttention};
    return all;
}

//! False (with one sentence on stderr) when the process runs a TensorRT of another major version than the headers
//! this library was built with; true when it matches or when no TensorRT is loaded.
bool runtimeMatchesBuild()
{
    using GetVersion = int32_t (*)();
    auto const getVersion = reinterpret_cast<GetVersion>(dlsym(RTLD_DEFAULT, "getInferLibVersion"));
    if (getVersion == nullptr)
    {
        return true;
    }
    int32_t const major = getVersion() / 10000;
    if (major == NV_TENSORRT_MAJOR)
    {
        return true;
    }
    std::fprintf(stderr,
        "m2f plugins: this library was built against TensorRT %d headers but the process runs TensorRT %d; rebuild it "
        "against this TensorRT: m2f plugins build --tensorrt-include <TensorRT include dir>\n",
        NV_TENSORRT_MAJOR, major);
    return false;
}

//! The registry the load-time constructor registered with (nullptr when it did not).
IPluginRegistry* gStaticRegistry = nullptr;

__attribute__((constructor)) void registerWhenTensorRTIsLoaded()
{
    using GetRegistry = IPluginRegistry* (*) ();
    auto const getRegistry = reinterpret_cast<GetRegistry>(dlsym(RTLD_DEFAULT, "getPluginRegistry"));
    if (getRegistry == nullptr || !runtimeMatchesBuild())
    {
        return;
    }
    IPluginRegistry* registry = getRegistry();
    bool registered = registry != nullptr;
    for (int32_t i = 0; registered && i < kNB_CREATORS; ++i)
    {
        registered = registry->registerCreator(*creators()[i], m2f::plugin::kNAMESPACE);
    }
    gStaticRegistry = registered ? registry : nullptr;
}
} // namespace

extern "C" __attribute__((visibility("default"))) IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    (void) kBUILD_INFO;
    nbCreators = 0;
    if (!runtimeMatchesBuild())
    {
        return nullptr;
    }
    if (gStaticRegistry != nullptr) // hand the load-time registration over to loadLibrary
    {
        for (int32_t i = 0; i < kNB_CREATORS; ++i)
        {
            gStaticRegistry->deregisterCreator(*creators()[i]);
        }
        gStaticRegistry = nullptr;
    }
    nbCreators = kNB_CREATORS;
    return creators();
}

// Kept for the loaders that call it; the logger it finds is never used (its ABI changed in TensorRT 11).
extern "C" __attribute__((visibility("default"))) void setLoggerFinder(ILoggerFinder* finder)
{
    (void) finder;
}
