/*
 * A stand-in for TensorRT's libnvinfer.so.<major>: the C entry points the Python bindings link against and the plugin
 * registry the plugin library and its hosts use, recording every call. It lets the real bindings wheels import on a
 * machine without TensorRT, and shows how m2f's plugin library registers in each host. It proves API surface and
 * loading, nothing about numerics or speed (nothing here builds or runs a network).
 *
 * The registry behaves as TensorRT documents it: registerCreator refuses a (name, version, namespace) already
 * registered; loadLibrary opens the library, hands it a logger finder, registers what getCreators returns and fails
 * if any of it is registered already; it holds the registry's lock meanwhile, so a library that calls back into the
 * registry from inside loadLibrary is recorded as "reentered" (a real registry could deadlock there).
 *
 * Test hooks (extern "C"): standin_report() -> the registered creators and the recorded events, one per line.
 */
#include <NvInferRuntime.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{
std::vector<std::string> gEvents;

void event(std::string const& what)
{
    gEvents.push_back(what);
}

class StandInLogger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING && msg != nullptr)
        {
            event(std::string("log ") + msg);
        }
    }
};

class StandInLoggerFinder : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return &mLogger;
    }

private:
    StandInLogger mLogger;
};

StandInLoggerFinder gLoggerFinder;

struct Entry
{
    IPluginCreatorInterface* creator;
    std::string name;
    std::string version;
    std::string ns;
    std::string fields;
};

class StandInRegistry : public IPluginRegistry
{
public:
    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const pluginNamespace) noexcept override
    {
        std::unique_lock<std::mutex> lock(mLock, std::try_to_lock);
        if (!lock.owns_lock())
        {
            event("reentered registerCreator");
            return false;
        }
        return add(creator, pluginNamespace, "registerCreator");
    }

    IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override
    {
        mView.clear();
        for (Entry const& e : mEntries)
        {
            mView.push_back(e.creator);
        }
        *numCreators = static_cast<int32_t>(mView.size());
        return mView.data();
    }

    IPluginCreatorInterface* getCreator(AsciiChar const* const pluginName, AsciiChar const* const pluginVersion,
        AsciiChar const* const pluginNamespace = "") noexcept override
    {
        for (Entry const& e : mEntries)
        {
            if (e.name == pluginName && e.version == pluginVersion && e.ns == (pluginNamespace ? pluginNamespace : ""))
            {
                return e.creator;
            }
        }
        return nullptr;
    }

    bool deregisterCreator(IPluginCreatorInterface const& creator) noexcept override
    {
        std::unique_lock<std::mutex> lock(mLock, std::try_to_lock);
        if (!lock.owns_lock())
        {
            event("reentered deregisterCreator");
            return false;
        }
        for (size_t i = 0; i < mEntries.size(); ++i)
        {
            if (mEntries[i].creator == &creator)
            {
                event("deregisterCreator " + mEntries[i].name);
                mEntries.erase(mEntries.begin() + static_cast<std::ptrdiff_t>(i));
                return true;
            }
        }
        return false;
    }

    PluginLibraryHandle loadLibrary(AsciiChar const* pluginPath) noexcept override
    {
        std::lock_guard<std::mutex> lock(mLock); // held while the library is opened and asked, as a registry may
        void* handle = dlopen(pluginPath, RTLD_NOW | RTLD_LOCAL);
        if (handle == nullptr)
        {
            event(std::string("loadLibrary failed to open: ") + dlerror());
            return nullptr;
        }
        using SetLoggerFinder = void (*)(ILoggerFinder*);
        using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
        auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(handle, "setLoggerFinder"));
        auto getCreators = reinterpret_cast<GetCreators>(dlsym(handle, "getCreators"));
        if (getCreators == nullptr)
        {
            event("loadLibrary: no getCreators");
            return nullptr;
        }
        if (setLoggerFinder != nullptr)
        {
            setLoggerFinder(&gLoggerFinder);
        }
        int32_t n = 0;
        IPluginCreatorInterface* const* creators = getCreators(n);
        event("loadLibrary getCreators " + std::to_string(n));
        for (int32_t i = 0; i < n; ++i)
        {
            if (!add(*creators[i], nullptr, "loadLibrary"))
            {
                return nullptr;
            }
        }
        return handle;
    }

    void deregisterLibrary(PluginLibraryHandle handle) noexcept override
    {
        (void) handle;
        event("deregisterLibrary");
    }

    void setErrorRecorder(IErrorRecorder* const recorder) noexcept override
    {
        mRecorder = recorder;
    }

    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return mRecorder;
    }

    bool isParentSearchEnabled() const override
    {
        return true;
    }

    void setParentSearchEnabled(bool const enabled) override
    {
        (void) enabled;
    }

    IPluginResource* acquirePluginResource(AsciiChar const* key, IPluginResource* resource) noexcept override
    {
        (void) key;
        (void) resource;
        event("acquirePluginResource");
        return nullptr;
    }

    int32_t releasePluginResource(AsciiChar const* key) noexcept override
    {
        (void) key;
        return 0;
    }

#if M2F_STANDIN_RECURSIVE
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept override
    {
        return getAllCreators(numCreators);
    }
#endif

#if NV_TENSORRT_MAJOR < 11
    // TensorRT 10's deprecated IPluginCreator overloads: part of the interface, never called by m2f
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    bool registerCreator(IPluginCreator& creator, AsciiChar const* const pluginNamespace) noexcept override
    {
        (void) creator;
        (void) pluginNamespace;
        event("registerCreator(IPluginCreator)");
        return false;
    }

    IPluginCreator* const* getPluginCreatorList(int32_t* const numCreators) const noexcept override
    {
        *numCreators = 0;
        return nullptr;
    }

    IPluginCreator* getPluginCreator(AsciiChar const* const pluginName, AsciiChar const* const pluginVersion,
        AsciiChar const* const pluginNamespace = "") noexcept override
    {
        (void) pluginName;
        (void) pluginVersion;
        (void) pluginNamespace;
        return nullptr;
    }

    bool deregisterCreator(IPluginCreator const& creator) noexcept override
    {
        (void) creator;
        return false;
    }
#pragma GCC diagnostic pop
#endif

    std::string report() const
    {
        std::string out;
        for (Entry const& e : mEntries)
        {
            out += "creator " + e.name + " " + e.version + " " + e.ns + e.fields + "\n";
        }
        for (std::string const& e : gEvents)
        {
            out += "event " + e + "\n";
        }
        return out;
    }

private:
    //! The creator added (the caller holds the lock); false, recorded, when one of its kind is registered already.
    bool add(IPluginCreatorInterface& creator, AsciiChar const* pluginNamespace, char const* how)
    {
        if (std::strcmp(creator.getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
        {
            event(std::string(how) + " refused a creator of kind " + creator.getInterfaceInfo().kind);
            return false;
        }
        auto& c = static_cast<IPluginCreatorV3One&>(creator);
        Entry entry{&creator, c.getPluginName(), c.getPluginVersion(),
            pluginNamespace != nullptr ? pluginNamespace : c.getPluginNamespace(), ""};
        PluginFieldCollection const* fields = c.getFieldNames();
        for (int32_t i = 0; fields != nullptr && i < fields->nbFields; ++i)
        {
            entry.fields += std::string(" field:") + fields->fields[i].name;
        }
        for (Entry const& e : mEntries)
        {
            if (e.name == entry.name && e.version == entry.version && e.ns == entry.ns)
            {
                event(std::string(how) + " duplicate " + entry.name);
                return false;
            }
        }
        event(std::string(how) + " " + entry.name);
        mEntries.push_back(entry);
        return true;
    }

    std::mutex mLock;
    std::vector<Entry> mEntries;
    mutable std::vector<IPluginCreatorInterface*> mView;
    IErrorRecorder* mRecorder{nullptr};
};

StandInRegistry gRegistry;
std::string gReport;
} // namespace

extern "C"
{
__attribute__((visibility("default"))) IPluginRegistry* getPluginRegistry() noexcept
{
    return &gRegistry;
}

__attribute__((visibility("default"))) IPluginRegistry* getBuilderPluginRegistry(EngineCapability) noexcept
{
    return &gRegistry;
}

__attribute__((visibility("default"))) int32_t getInferLibVersion() noexcept
{
    return NV_TENSORRT_VERSION;
}

__attribute__((visibility("default"))) void* createInferBuilder_INTERNAL(void*, int32_t) noexcept
{
    event("createInferBuilder");
    return nullptr;
}

__attribute__((visibility("default"))) void* createInferRuntime_INTERNAL(void*, int32_t) noexcept
{
    event("createInferRuntime");
    return nullptr;
}

__attribute__((visibility("default"))) void* createInferRefitter_INTERNAL(void*, void*, int32_t) noexcept
{
    return nullptr;
}

__attribute__((visibility("default"))) char const* standin_report() noexcept
{
    gReport = gRegistry.report();
    return gReport.c_str();
}
}
