/*
 * The other two libraries TensorRT's Python bindings link against, as stand-ins: libnvinfer_plugin (TensorRT's own
 * plugins) and libnvonnxparser. Only the entry points the bindings import; nothing is parsed or registered.
 */
#include <cstdint>

extern "C"
{
#if M2F_STANDIN_PLUGIN
__attribute__((visibility("default"))) bool initLibNvInferPlugins(void*, char const*)
{
    return true;
}
#else
__attribute__((visibility("default"))) void* createNvOnnxParser_INTERNAL(void*, void*, int32_t) noexcept
{
    return nullptr;
}

__attribute__((visibility("default"))) void* createNvOnnxParserRefitter_INTERNAL(void*, void*, int32_t) noexcept
{
    return nullptr;
}

__attribute__((visibility("default"))) int32_t getNvOnnxParserVersion() noexcept
{
    return 0;
}
#endif
}
