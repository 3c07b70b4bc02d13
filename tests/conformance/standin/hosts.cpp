/*
 * Hosts that load m2f's plugin library as the real ones do, linked against the stand-in libnvinfer:
 *
 *   host static LIB      trtexec --staticPlugins: dlopen the library into a process running TensorRT
 *   host dynamic LIB     trtexec --dynamicPlugins: IPluginRegistry::loadLibrary
 *   server LIB BACKEND   Triton: the server opens its TensorRT backend with RTLD_LOCAL (so TensorRT is private to it);
 *                        the backend opens the library named in --backend-config=tensorrt,plugins=... RTLD_LOCAL too
 *
 * Each prints the stand-in's report (registered creators, recorded events). Built three times: the trtexec-like
 * host (linked to the stand-in), -DM2F_BACKEND (the Triton-like backend library, linked to it) and -DM2F_SERVER (the
 * Triton-like server, not linked to it: TensorRT reaches the process only through the backend).
 */
#include <dlfcn.h>

#include <cstdio>
#include <cstring>

#if M2F_BACKEND
extern "C" char const* standin_report() noexcept;

extern "C" __attribute__((visibility("default"))) char const* backend_load_plugins(char const* path)
{
    if (dlopen(path, RTLD_NOW | RTLD_LOCAL) == nullptr) // tensorrt_backend's OpenLibraryHandle
    {
        return dlerror();
    }
    return standin_report();
}
#elif M2F_SERVER
int main(int argc, char** argv)
{
    if (argc != 3)
    {
        std::fprintf(stderr, "usage: server LIB BACKEND\n");
        return 2;
    }
    void* backend = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL); // Triton opens backends privately
    if (backend == nullptr)
    {
        std::printf("error %s\n", dlerror());
        return 1;
    }
    using Load = char const* (*) (char const*);
    auto load = reinterpret_cast<Load>(dlsym(backend, "backend_load_plugins"));
    std::printf("%s", load(argv[1]));
    return 0;
}
#else
#include <NvInferRuntime.h>

extern "C" char const* standin_report() noexcept;

int main(int argc, char** argv)
{
    if (argc != 3)
    {
        std::fprintf(stderr, "usage: host static|dynamic LIB\n");
        return 2;
    }
    nvinfer1::IPluginRegistry* registry = getPluginRegistry(); // TensorRT is loaded and in use
    if (std::strcmp(argv[1], "static") == 0)
    {
        if (dlopen(argv[2], RTLD_LAZY) == nullptr) // what trtexec --staticPlugins does
        {
            std::printf("error %s\n", dlerror());
            return 1;
        }
    }
    else if (registry->loadLibrary(argv[2]) == nullptr)
    {
        std::printf("error loadLibrary returned nullptr\n");
    }
    std::printf("%s", standin_report());
    return 0;
}
#endif
