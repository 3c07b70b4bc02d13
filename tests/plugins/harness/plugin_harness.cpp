/*
 * Test harness for libm2f_plugins.so without a TensorRT library: dlopen the plugin library, call getCreators, and
 * drive every creator and plugin method TensorRT would call before and after a build (enqueue included: without a
 * CUDA driver it must fail with a message, not crash). Compiled against each TensorRT header set and run under
 * AddressSanitizer by tests/plugins/test_plugin_library.py.
 *
 * The expression builder below is test scaffolding for TensorRT's interface: IExprBuilder and IDimensionExpr are
 * non-virtual wrappers over apiv:: classes with the same layout in TensorRT 10.3, 10.16 and 11.1, so the harness
 * provides its own implementation to call getOutputShapes with constant and symbolic dims.
 *
 * Usage: plugin_harness LIBRARY. Prints "ok <check>" / "FAIL <check>: <detail>" lines and facts as
 * "fact <key> <value>"; exits 1 if any check failed.
 */
#include <NvInferRuntime.h>

#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <string>
#include <vector>

using namespace nvinfer1;

// While set, every allocation through operator new fails: the plugin library's allocations bind to these
// definitions (the executable comes first in the symbol search), so a throwing allocation inside an entry point can
// be provoked and its handling checked.
bool gFailAllocations = false;

void* operator new(size_t size)
{
    if (gFailAllocations)
    {
        throw std::bad_alloc();
    }
    if (void* p = std::malloc(size == 0 ? 1 : size))
    {
        return p;
    }
    throw std::bad_alloc();
}

void operator delete(void* p) noexcept
{
    std::free(p);
}

void operator delete(void* p, size_t) noexcept
{
    std::free(p);
}

namespace
{
int gFailures = 0;

//! What the plugins logged through the logger TensorRT would hand over (the last error, without allocating: it is
//! also called while allocations fail).
class RecordingLogger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity == Severity::kERROR && msg != nullptr)
        {
            std::snprintf(last, sizeof last, "%s", msg);
            ++count;
        }
    }
    char last[1024] = "";
    int32_t count = 0;
};

class TestLoggerFinder : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return &logger;
    }
    RecordingLogger logger;
};

//! An execution context's error recorder: what the plugins reported while attached to it.
class RecordingErrorRecorder : public IErrorRecorder
{
public:
    int32_t getNbErrors() const noexcept override
    {
        return static_cast<int32_t>(errors.size());
    }
    ErrorCode getErrorCode(int32_t) const noexcept override
    {
        return ErrorCode::kINVALID_ARGUMENT;
    }
    ErrorDesc getErrorDesc(int32_t i) const noexcept override
    {
        return errors[i].c_str();
    }
    bool hasOverflowed() const noexcept override
    {
        return false;
    }
    void clear() noexcept override
    {
        errors.clear();
    }
    bool reportError(ErrorCode, ErrorDesc desc) noexcept override
    {
        errors.emplace_back(desc);
        return true;
    }
    RefCount incRefCount() noexcept override
    {
        return 1;
    }
    RefCount decRefCount() noexcept override
    {
        return 0;
    }
    std::vector<std::string> errors;
};

class TestResourceContext : public IPluginResourceContext
{
public:
    IGpuAllocator* getGpuAllocator() const noexcept override
    {
        return nullptr;
    }
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return recorder;
    }
    IErrorRecorder* recorder{nullptr};
};

TestLoggerFinder gLoggerFinder;

//! Whether the last error message the logger received contains `text`.
bool logged(char const* text)
{
    return gLoggerFinder.logger.count > 0 && std::strstr(gLoggerFinder.logger.last, text) != nullptr;
}

void check(bool ok, std::string const& name, std::string const& detail = "")
{
    if (ok)
    {
        std::printf("ok %s\n", name.c_str());
    }
    else
    {
        std::printf("FAIL %s: %s\n", name.c_str(), detail.c_str());
        ++gFailures;
    }
}

// ---- expression builder scaffolding ------------------------------------------------------------------------------

class TestDimImpl : public apiv::VDimensionExpr
{
public:
    TestDimImpl(bool constant, int64_t value)
        : mConstant(constant)
        , mValue(value)
    {
    }
    bool isConstant() const override
    {
        return mConstant;
    }
    int64_t getConstantValue() const override
    {
        return mConstant ? mValue : -1;
    }
    bool isSizeTensor() const override
    {
        return false;
    }

private:
    bool mConstant;
    int64_t mValue;
};

class TestDim : public IDimensionExpr
{
public:
    TestDim(bool constant, int64_t value)
        : mTestImpl(constant, value)
    {
        mImpl = &mTestImpl;
    }
    ~TestDim() noexcept override = default;

private:
    TestDimImpl mTestImpl;
};

class TestBuilderImpl : public apiv::VExprBuilder
{
public:
    IDimensionExpr const* constant(int64_t value) override
    {
        mDims.emplace_back(true, value);
        return &mDims.back();
    }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override
    {
        if (a.isConstant() && b.isConstant())
        {
            int64_t const x = a.getConstantValue();
            int64_t const y = b.getConstantValue();
            int64_t value = 0;
            switch (op)
            {
            case DimensionOperation::kSUM: value = x + y; break;
            case DimensionOperation::kPROD: value = x * y; break;
            case DimensionOperation::kMAX: value = x > y ? x : y; break;
            case DimensionOperation::kMIN: value = x < y ? x : y; break;
            case DimensionOperation::kSUB: value = x - y; break;
            case DimensionOperation::kFLOOR_DIV: value = x / y; break;
            default: value = -1; break;
            }
            return constant(value);
        }
        mDims.emplace_back(false, 0);
        return &mDims.back();
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }
    IDimensionExpr const* symbol()
    {
        mDims.emplace_back(false, 0);
        return &mDims.back();
    }

private:
    std::deque<TestDim> mDims; // stable addresses
};

class TestBuilder : public IExprBuilder
{
public:
    TestBuilder()
    {
        mImpl = &mTestImpl;
    }
    ~TestBuilder() noexcept override = default;
    TestBuilderImpl& impl()
    {
        return mTestImpl;
    }

private:
    TestBuilderImpl mTestImpl;
};

DimsExprs exprs(TestBuilder& b, std::vector<int64_t> const& dims) // -1 = symbolic
{
    DimsExprs e{};
    e.nbDims = static_cast<int32_t>(dims.size());
    for (size_t i = 0; i < dims.size(); ++i)
    {
        e.d[i] = dims[i] < 0 ? b.impl().symbol() : b.constant(dims[i]);
    }
    return e;
}

// ---- descriptors -------------------------------------------------------------------------------------------------

Dims dimsOf(std::vector<int64_t> const& v)
{
    Dims d{};
    d.nbDims = static_cast<int32_t>(v.size());
    for (size_t i = 0; i < v.size(); ++i)
    {
        d.d[i] = v[i];
    }
    return d;
}

DynamicPluginTensorDesc dynamic(std::vector<int64_t> const& dims, DataType type,
    TensorFormat format = TensorFormat::kLINEAR)
{
    DynamicPluginTensorDesc d{};
    d.desc.dims = dimsOf(dims);
    d.desc.type = type;
    d.desc.format = format;
    d.desc.scale = -1.F;
    d.min = d.max = d.opt = d.desc.dims;
    return d;
}

//! Whether the plugin accepts every position of `io` (its inputs, then one output) as given.
bool acceptsAll(IPluginV3OneBuild* build, std::vector<DynamicPluginTensorDesc> const& io)
{
    int32_t const nbInputs = static_cast<int32_t>(io.size()) - 1;
    for (int32_t pos = 0; pos <= nbInputs; ++pos)
    {
        if (!build->supportsFormatCombination(pos, io.data(), nbInputs, 1))
        {
            return false;
        }
    }
    return true;
}

// ---- helpers -----------------------------------------------------------------------------------------------------

IPluginCreatorV3One* findCreator(IPluginCreatorInterface* const* creators, int32_t n, char const* name)
{
    for (int32_t i = 0; i < n; ++i)
    {
        if (std::strcmp(creators[i]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
        {
            continue;
        }
        auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
        if (std::strcmp(c->getPluginName(), name) == 0)
        {
            return c;
        }
    }
    return nullptr;
}

IPluginV3* create(IPluginCreatorV3One* creator, std::vector<PluginField> const& fields, TensorRTPhase phase)
{
    PluginFieldCollection fc{};
    fc.nbFields = static_cast<int32_t>(fields.size());
    fc.fields = fields.empty() ? nullptr : fields.data();
    return creator->createPlugin("test", &fc, phase);
}

template <typename T>
T* capability(IPluginV3* plugin, PluginCapabilityType type)
{
    return static_cast<T*>(plugin->getCapabilityInterface(type));
}

void describeCreator(IPluginCreatorV3One* c)
{
    std::printf("fact creator %s %s %s", c->getPluginName(), c->getPluginVersion(), c->getPluginNamespace());
    PluginFieldCollection const* names = c->getFieldNames();
    for (int32_t i = 0; names != nullptr && i < names->nbFields; ++i)
    {
        std::printf(" field:%s", names->fields[i].name);
    }
    std::printf("\n");
}

void commonChecks(IPluginV3* plugin, IPluginCreatorV3One* creator, std::string const& tag)
{
    auto* core = capability<IPluginV3OneCore>(plugin, PluginCapabilityType::kCORE);
    check(core != nullptr && capability<IPluginV3OneBuild>(plugin, PluginCapabilityType::kBUILD) != nullptr
            && capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME) != nullptr,
        tag + " capabilities");
    check(core && std::strcmp(core->getPluginName(), creator->getPluginName()) == 0
            && std::strcmp(core->getPluginVersion(), creator->getPluginVersion()) == 0
            && std::strcmp(core->getPluginNamespace(), creator->getPluginNamespace()) == 0,
        tag + " core names match the creator");
    IPluginV3* copy = plugin->clone();
    check(copy != nullptr && copy != plugin, tag + " clone");
    auto* runtime = capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME);
    IPluginV3* attached = runtime->attachToContext(nullptr);
    check(attached != nullptr, tag + " attachToContext");
    delete copy;
    delete attached;
}

// ---- M2fMSDeformAttn ---------------------------------------------------------------------------------------------

void msDeformAttn(IPluginCreatorV3One* creator)
{
    int32_t one = 1, two = 2;
    float half = 0.5F;
    check(create(creator, {PluginField("fused", &two, PluginFieldType::kINT32, 1)}, TensorRTPhase::kBUILD) == nullptr,
        "msda fused=2 rejected");
    check(logged("m2f plugins: M2fMSDeformAttn: attribute 'fused' is 2"), "msda error goes to TensorRT's logger",
        gLoggerFinder.logger.last);
    check(create(creator, {PluginField("fused", &half, PluginFieldType::kFLOAT32, 1)}, TensorRTPhase::kBUILD)
            == nullptr,
        "msda float attribute rejected");
    IPluginV3* plain = create(creator, {}, TensorRTPhase::kBUILD);
    check(plain != nullptr, "msda missing attribute defaults to plain");
    IPluginV3* fused = create(creator, {PluginField("fused", &one, PluginFieldType::kINT32, 1)}, TensorRTPhase::kBUILD);
    check(fused != nullptr, "msda fused=1 created");
    if (plain == nullptr || fused == nullptr)
    {
        return;
    }
    commonChecks(fused, creator, "msda");

    // serialisation round trip: the fields re-create an equal plugin at runtime
    PluginFieldCollection const* saved
        = capability<IPluginV3OneRuntime>(fused, PluginCapabilityType::kRUNTIME)->getFieldsToSerialize();
    bool savedFused = saved && saved->nbFields == 1 && std::strcmp(saved->fields[0].name, "fused") == 0
        && *static_cast<int32_t const*>(saved->fields[0].data) == 1;
    check(savedFused, "msda serialises fused=1");
    IPluginV3* restored = creator->createPlugin("restored", saved, TensorRTPhase::kRUNTIME);
    PluginFieldCollection const* again
        = restored ? capability<IPluginV3OneRuntime>(restored, PluginCapabilityType::kRUNTIME)->getFieldsToSerialize()
                   : nullptr;
    check(again && again->nbFields == 1 && *static_cast<int32_t const*>(again->fields[0].data) == 1,
        "msda re-created from its fields");
    delete restored;

    auto* build = capability<IPluginV3OneBuild>(fused, PluginCapabilityType::kBUILD);
    check(build->getNbOutputs() == 1, "msda one output");
    DataType in[6] = {DataType::kHALF, DataType::kINT32, DataType::kINT32, DataType::kHALF, DataType::kHALF,
        DataType::kHALF};
    DataType out[1] = {DataType::kFLOAT};
    check(build->getOutputDataTypes(out, 1, in, 6) == 0 && out[0] == DataType::kHALF, "msda output type follows value");
    in[0] = DataType::kINT8;
    check(build->getOutputDataTypes(out, 1, in, 6) != 0, "msda int8 value rejected");

    // formats: value fp16, shapes/starts int32, the rest fp16; mixing types or non-linear formats is refused
    std::vector<DynamicPluginTensorDesc> io = {dynamic({2, 21, 8, 32}, DataType::kHALF),
        dynamic({3, 2}, DataType::kINT32), dynamic({3}, DataType::kINT32), dynamic({2, 21, 3, 2}, DataType::kHALF),
        dynamic({2, 21, 8, 3, 4, 2}, DataType::kHALF), dynamic({2, 21, 8, 12}, DataType::kHALF),
        dynamic({2, 21, 256}, DataType::kHALF)};
    check(acceptsAll(build, io), "msda fp16 linear combination accepted");
    for (int32_t i = 3; i < 6; ++i)
    {
        io[i].desc.type = DataType::kFLOAT;
    }
    check(acceptsAll(build, io), "msda fp16 value with fp32 sampling inputs accepted");
    io[4].desc.type = DataType::kHALF;
    check(!build->supportsFormatCombination(4, io.data(), 6, 1), "msda mixed sampling types rejected");
    for (int32_t i = 3; i < 6; ++i)
    {
        io[i].desc.type = DataType::kHALF;
    }
    io[6].desc.type = DataType::kFLOAT;
    check(!build->supportsFormatCombination(6, io.data(), 6, 1), "msda output not in value's type rejected");
    io[6].desc.type = DataType::kHALF;
    io[1].desc.type = DataType::kINT64;
    check(!build->supportsFormatCombination(1, io.data(), 6, 1), "msda int64 spatial_shapes rejected");
    io[1].desc.type = DataType::kINT32;
    io[0].desc.format = TensorFormat::kCHW32;
    check(!build->supportsFormatCombination(0, io.data(), 6, 1), "msda non-linear format rejected");
    io[0].desc.format = TensorFormat::kLINEAR;
    io[0].desc.type = DataType::kINT8;
    check(!build->supportsFormatCombination(0, io.data(), 6, 1), "msda int8 value rejected by format check");

    // shapes: [N, Lq, M*D] with constant and symbolic N / Lq
    TestBuilder b;
    std::vector<DimsExprs> shapes = {exprs(b, {-1, -1, 8, 32}), exprs(b, {3, 2}), exprs(b, {3}),
        exprs(b, {-1, -1, 3, 2}), exprs(b, {-1, -1, 8, 3, 4, 2}), exprs(b, {-1, -1, 8, 12})};
    DimsExprs result{};
    int32_t status = build->getOutputShapes(shapes.data(), 6, nullptr, 0, &result, 1, b);
    check(status == 0 && result.nbDims == 3 && result.d[0] == shapes[0].d[0] && result.d[1] == shapes[4].d[1]
            && result.d[2]->isConstant() && result.d[2]->getConstantValue() == 256,
        "msda fused output shape [N, Lq, M*D] (symbolic N, Lq)");
    std::vector<DimsExprs> plainShapes = {exprs(b, {2, 21, 8, 32}), exprs(b, {3, 2}), exprs(b, {3}),
        exprs(b, {2, 7, 8, 3, 4, 2}), exprs(b, {2, 7, 8, 3, 4})};
    status = capability<IPluginV3OneBuild>(plain, PluginCapabilityType::kBUILD)
                 ->getOutputShapes(plainShapes.data(), 5, nullptr, 0, &result, 1, b);
    check(status == 0 && result.d[0]->getConstantValue() == 2 && result.d[1]->getConstantValue() == 7
            && result.d[2]->getConstantValue() == 256,
        "msda plain output shape [2, 7, 256]");
    check(build->getOutputShapes(plainShapes.data(), 5, nullptr, 0, &result, 1, b) != 0,
        "msda fused plugin refuses the plain form's 5 inputs");

    // configure: head dim 96 is refused, 32 accepted
    std::vector<DynamicPluginTensorDesc> outDesc = {dynamic({2, 21, 256}, DataType::kHALF)};
    io[0] = dynamic({2, 21, 8, 32}, DataType::kHALF);
    check(build->configurePlugin(io.data(), 6, outDesc.data(), 1) == 0, "msda configure D=32");
    io[0] = dynamic({2, 21, 8, 96}, DataType::kHALF);
    check(build->configurePlugin(io.data(), 6, outDesc.data(), 1) != 0, "msda configure D=96 refused");
    io[0] = dynamic({2, 21, 8, 32}, DataType::kHALF);

    // an inconsistent graph is refused at configure time, naming the size (not read out of bounds at enqueue)
    std::vector<DynamicPluginTensorDesc> bad = io;
    bad[4] = dynamic({2, 21, 4, 3, 4, 2}, DataType::kHALF); // 4 heads in the offsets, 8 in value
    check(build->configurePlugin(bad.data(), 6, outDesc.data(), 1) != 0 && logged("disagree on M"),
        "msda heads that disagree refused at configure");
    bad = io;
    bad[3] = dynamic({2, 20, 3, 2}, DataType::kHALF); // 20 reference points, 21 queries elsewhere
    check(build->configurePlugin(bad.data(), 6, outDesc.data(), 1) != 0 && logged("disagree on Lq"),
        "msda queries that disagree refused at configure");
    bad = io;
    bad[5] = dynamic({2, 21, 8, 11}, DataType::kHALF); // logits for 11 samples, L*P = 12
    check(build->configurePlugin(bad.data(), 6, outDesc.data(), 1) != 0 && logged("disagree on L*P"),
        "msda logits that are not L*P refused at configure");
    bad = io;
    bad[1] = dynamic({4, 2}, DataType::kINT32); // 4 levels in spatial_shapes, 3 in level_start_index
    check(build->configurePlugin(bad.data(), 6, outDesc.data(), 1) != 0 && logged("disagree on L"),
        "msda level counts that disagree refused at configure");
    bad = io;
    bad[0] = dynamic({-1, -1, 8, 32}, DataType::kHALF); // unknown batch and length at build time: fine
    bad[4] = dynamic({-1, -1, 8, 3, 4, 2}, DataType::kHALF);
    check(build->configurePlugin(bad.data(), 6, outDesc.data(), 1) == 0, "msda symbolic dims accepted at configure");

    // enqueue without a CUDA driver: an error code and a message, no crash
    std::vector<PluginTensorDesc> desc;
    for (int32_t i = 0; i < 6; ++i)
    {
        desc.push_back(io[i].desc);
    }
    desc[0] = dynamic({2, 21, 8, 32}, DataType::kHALF).desc;
    PluginTensorDesc outTensor = outDesc[0].desc;
    std::vector<char> buffer(64);
    void const* inputs[6] = {buffer.data(), buffer.data(), buffer.data(), buffer.data(), buffer.data(), buffer.data()};
    void* outputs[1] = {buffer.data()};
    auto* runtime = capability<IPluginV3OneRuntime>(fused, PluginCapabilityType::kRUNTIME);
    check(runtime->onShapeChange(desc.data(), 6, &outTensor, 1) == 0, "msda onShapeChange");
    int32_t const enqueued = runtime->enqueue(desc.data(), &outTensor, inputs, outputs, nullptr, nullptr);
    std::printf("fact msda_enqueue %d\n", enqueued);

    // the kernels index with int32: a shape beyond it is refused before any launch
    std::vector<PluginTensorDesc> huge = desc;
    huge[0] = dynamic({64, 2000000, 8, 32}, DataType::kHALF).desc;
    huge[3] = dynamic({64, 21, 3, 2}, DataType::kHALF).desc;
    huge[4] = dynamic({64, 21, 8, 3, 4, 2}, DataType::kHALF).desc;
    huge[5] = dynamic({64, 21, 8, 12}, DataType::kHALF).desc;
    check(runtime->onShapeChange(huge.data(), 6, &outTensor, 1) != 0 && logged("int32 indexing"),
        "msda int32 overflow refused at onShapeChange");

    // a failing allocation inside an entry point is reported, not let out (which would terminate the process)
    gFailAllocations = true;
    int32_t const underPressure = build->configurePlugin(bad.data(), 5, outDesc.data(), 1);
    IPluginV3* noClone = fused->clone();
    gFailAllocations = false;
    check(underPressure != 0 && noClone == nullptr && logged("bad_alloc"), "msda throwing allocation reported");

    // serialisation fields belong to the object asked: a clone's survive the original
    IPluginV3* copy = fused->clone();
    delete fused;
    PluginFieldCollection const* copied
        = copy ? capability<IPluginV3OneRuntime>(copy, PluginCapabilityType::kRUNTIME)->getFieldsToSerialize() : nullptr;
    check(copied && copied->nbFields == 1 && *static_cast<int32_t const*>(copied->fields[0].data) == 1,
        "msda clone serialises its own fields after the original is gone");

    // attached to an execution context, run-time errors go to that context's error recorder
    RecordingErrorRecorder recorder;
    TestResourceContext context;
    context.recorder = &recorder;
    IPluginV3* attached = copy ? capability<IPluginV3OneRuntime>(copy, PluginCapabilityType::kRUNTIME)
                                     ->attachToContext(&context)
                               : nullptr;
    desc[0] = dynamic({2, 21, 8, 96}, DataType::kHALF).desc;
    int32_t const refused = attached ? capability<IPluginV3OneRuntime>(attached, PluginCapabilityType::kRUNTIME)
                                           ->enqueue(desc.data(), &outTensor, inputs, outputs, nullptr, nullptr)
                                     : 0;
    check(refused != 0 && recorder.getNbErrors() == 1
            && std::string(recorder.getErrorDesc(0)).find("head dim 96") != std::string::npos,
        "msda run-time error reported to the context's error recorder");
    delete attached;
    delete copy;
    delete plain;
}

// ---- M2fMaskedAttention ------------------------------------------------------------------------------------------

void maskedAttention(IPluginCreatorV3One* creator)
{
    IPluginV3* plugin = create(creator, {}, TensorRTPhase::kBUILD);
    check(plugin != nullptr, "attention created");
    if (plugin == nullptr)
    {
        return;
    }
    commonChecks(plugin, creator, "attention");
    auto* build = capability<IPluginV3OneBuild>(plugin, PluginCapabilityType::kBUILD);
    std::vector<DynamicPluginTensorDesc> io = {dynamic({1, 8, 100, 32}, DataType::kHALF),
        dynamic({1, 8, 300, 32}, DataType::kHALF), dynamic({1, 8, 300, 32}, DataType::kHALF),
        dynamic({1, 100, 300}, DataType::kFLOAT), dynamic({1, 8, 100, 32}, DataType::kHALF)};
    check(acceptsAll(build, io), "attention fp16 q/k/v with fp32 mask accepted");
    io[3].desc.type = DataType::kHALF;
    check(!build->supportsFormatCombination(3, io.data(), 4, 1), "attention fp16 mask refused (threshold is fp32)");
    io[3].desc.type = DataType::kFLOAT;
    io[2].desc.type = DataType::kFLOAT;
    check(!build->supportsFormatCombination(2, io.data(), 4, 1), "attention mixed q/v types refused");
    io[2].desc.type = DataType::kHALF;

    TestBuilder b;
    std::vector<DimsExprs> shapes = {exprs(b, {-1, 8, 100, 32}), exprs(b, {-1, 8, -1, 32}), exprs(b, {-1, 8, -1, 32}),
        exprs(b, {-1, 100, -1})};
    DimsExprs result{};
    int32_t status = build->getOutputShapes(shapes.data(), 4, nullptr, 0, &result, 1, b);
    check(status == 0 && result.nbDims == 4 && result.d[0] == shapes[0].d[0]
            && result.d[2]->getConstantValue() == 100,
        "attention output shape = q's");
    check(build->getOutputShapes(shapes.data(), 2, nullptr, 0, &result, 1, b) != 0, "attention 2 inputs refused");
    std::vector<DynamicPluginTensorDesc> outDesc = {io[4]};
    check(build->configurePlugin(io.data(), 3, outDesc.data(), 1) == 0, "attention configure without a mask");
    io[0] = dynamic({1, 8, 100, 128}, DataType::kHALF);
    check(build->configurePlugin(io.data(), 4, outDesc.data(), 1) != 0, "attention configure D=128 refused");
    io[0] = dynamic({1, 8, 100, 32}, DataType::kHALF);
    check(build->configurePlugin(io.data(), 4, outDesc.data(), 1) == 0, "attention configure with a mask");
    std::vector<DynamicPluginTensorDesc> bad = io;
    bad[2] = dynamic({1, 8, 299, 32}, DataType::kHALF); // v with 299 keys, k with 300
    check(build->configurePlugin(bad.data(), 4, outDesc.data(), 1) != 0 && logged("disagree on S"),
        "attention keys that disagree refused at configure");
    bad = io;
    bad[3] = dynamic({1, 99, 300}, DataType::kFLOAT); // a mask for 99 queries
    check(build->configurePlugin(bad.data(), 4, outDesc.data(), 1) != 0 && logged("disagree on Q"),
        "attention mask for other queries refused at configure");
    bad = io;
    bad[1] = dynamic({1, 4, 300, 32}, DataType::kHALF); // k with 4 heads
    check(build->configurePlugin(bad.data(), 4, outDesc.data(), 1) != 0 && logged("disagree on M"),
        "attention heads that disagree refused at configure");
    PluginFieldCollection const* saved
        = capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME)->getFieldsToSerialize();
    IPluginV3* restored = creator->createPlugin("restored", saved, TensorRTPhase::kRUNTIME);
    check(saved != nullptr && saved->nbFields == 0 && restored != nullptr, "attention serialises no fields");
    delete restored;

    std::vector<PluginTensorDesc> desc = {dynamic({1, 8, 100, 32}, DataType::kHALF).desc, io[1].desc, io[2].desc,
        io[3].desc};
    std::vector<char> buffer(64);
    void const* inputs[4] = {buffer.data(), buffer.data(), buffer.data(), buffer.data()};
    void* outputs[1] = {buffer.data()};
    auto* runtime = capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME);
    runtime->onShapeChange(desc.data(), 4, &io[4].desc, 1);
    int32_t const enqueued = runtime->enqueue(desc.data(), &io[4].desc, inputs, outputs, nullptr, nullptr);
    std::printf("fact attention_enqueue %d\n", enqueued);
    delete plugin;
}
} // namespace

int main(int argc, char** argv)
{
    if (argc != 2)
    {
        std::fprintf(stderr, "usage: plugin_harness LIBRARY\n");
        return 2;
    }
    void* library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr)
    {
        std::printf("FAIL dlopen: %s\n", dlerror());
        return 1;
    }
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(library, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(library, "setLoggerFinder"));
    check(getCreators != nullptr && setLoggerFinder != nullptr, "exports getCreators and setLoggerFinder");
    if (getCreators == nullptr || setLoggerFinder == nullptr)
    {
        return 1;
    }
    setLoggerFinder(&gLoggerFinder); // the plugins' messages go to its logger
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);
    check(n == 2 && creators != nullptr, "two creators", std::to_string(n));
    IPluginCreatorV3One* msda = findCreator(creators, n, "M2fMSDeformAttn");
    IPluginCreatorV3One* attention = findCreator(creators, n, "M2fMaskedAttention");
    check(msda != nullptr && attention != nullptr, "creators are IPluginCreatorV3One");
    if (msda != nullptr)
    {
        describeCreator(msda);
        msDeformAttn(msda);
    }
    if (attention != nullptr)
    {
        describeCreator(attention);
        maskedAttention(attention);
    }
    dlclose(library);
    std::printf("fact failures %d\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}
