#include "msDeformAttnPlugin.h"

#include "m2f_ms_deform_attn.h"

#include <new>

using namespace nvinfer1;

namespace m2f
{
namespace plugin
{
namespace
{
// the op's contract (m2f_op_contracts.h, generated from contract.py)
constexpr char const* kNAME = M2F_MSDA_NAME;
constexpr char const* kVERSION = M2F_MSDA_VERSION;
constexpr int32_t kMAX_HEAD_DIM = M2F_MSDA_MAX_HEAD_DIM; // the kernels' configurations: head dims up to 32 and 64
constexpr int32_t kPLAIN_INPUTS = M2F_MSDA_PLAIN_INPUTS;
constexpr int32_t kFUSED_INPUTS = M2F_MSDA_FUSED_INPUTS;
// input ranks, in order: value, spatial_shapes, level_start_index, then the form's three
constexpr int32_t kPLAIN_RANKS[kPLAIN_INPUTS] = M2F_MSDA_PLAIN_RANKS;
constexpr int32_t kFUSED_RANKS[kFUSED_INPUTS] = M2F_MSDA_FUSED_RANKS;
constexpr int32_t kSHAPES = 1;
constexpr int32_t kSTARTS = 2;

using Launcher = CUresult (*)(CUstream, CUdeviceptr, CUdeviceptr, CUdeviceptr, CUdeviceptr, CUdeviceptr, CUdeviceptr,
    CUdeviceptr, int32_t, int32_t, int32_t, int32_t, int32_t, int32_t, int32_t);

// the kernels' dtype configurations: every float fp32; fp16 value and sampling inputs; fp16 value, fp32 sampling
enum Precision : int32_t
{
    kFP32 = 0,
    kFP16 = 1,
    kFP16_FP32_SAMPLING = 2,
};

// [fused][precision][head dim > 32]
Launcher const kLAUNCHERS[2][3][2] = {
    {{m2f_msda_fp32_d32, m2f_msda_fp32_d64}, {m2f_msda_fp16_d32, m2f_msda_fp16_d64},
        {m2f_msda_fp16_sfp32_d32, m2f_msda_fp16_sfp32_d64}},
    {{m2f_msda_fused_fp32_d32, m2f_msda_fused_fp32_d64}, {m2f_msda_fused_fp16_d32, m2f_msda_fused_fp16_d64},
        {m2f_msda_fused_fp16_sfp32_d32, m2f_msda_fused_fp16_sfp32_d64}},
};

CUdeviceptr device(void const* pointer)
{
    return reinterpret_cast<CUdeviceptr>(pointer);
}

//! Which kernel dtype configuration serves a value of `value` and sampling inputs of `sampling`.
Precision precisionOf(DataType value, DataType sampling)
{
    if (value == DataType::kFLOAT)
    {
        return kFP32;
    }
    return sampling == DataType::kFLOAT ? kFP16_FP32_SAMPLING : kFP16;
}
} // namespace

MSDeformAttnPlugin::MSDeformAttnPlugin(int32_t fused) noexcept
    : mFused(fused)
{
}

IPluginV3* MSDeformAttnPlugin::clone() noexcept
{
    return guard<IPluginV3*>(nullptr, [&]() -> IPluginV3* {
        auto* copy = new MSDeformAttnPlugin(mFused);
        copy->mRecorder = mRecorder;
        return copy;
    });
}

AsciiChar const* MSDeformAttnPlugin::getPluginName() const noexcept
{
    return kNAME;
}

AsciiChar const* MSDeformAttnPlugin::getPluginVersion() const noexcept
{
    return kVERSION;
}

std::string MSDeformAttnPlugin::checkInputs(std::vector<int32_t> const& ranks) const
{
    size_t const expected = mFused ? kFUSED_INPUTS : kPLAIN_INPUTS;
    if (ranks.size() != expected)
    {
        return std::string("the ") + (mFused ? "fused" : "plain") + " form takes " + std::to_string(expected)
            + " inputs, not " + std::to_string(ranks.size());
    }
    return wrongRank(ranks, mFused ? kFUSED_RANKS : kPLAIN_RANKS, " (see the plugin's README)");
}

std::string MSDeformAttnPlugin::checkShapes(std::vector<Dims> const& in, int32_t nbOutputs, bool runtime) const
{
    std::string problem = nbOutputs != 1 ? "the plugin has one output" : checkInputs(ranksOf(in));
    if (!problem.empty())
    {
        return problem;
    }
    // value [N, S, M, D]; spatial_shapes [L, 2]; level_start_index [L]; plain: sampling_locations [N, Lq, M, L, P, 2],
    // attention_weights [N, Lq, M, L, P]; fused: reference_points [N, Lq, L, 2], sampling_offsets
    // [N, Lq, M, L, P, 2], attention_logits [N, Lq, M, L*P]
    SizeAgreement sizes;
    Dims const& samples = in[mFused ? 4 : 3];
    bool ok = sizes.agree("N", in[0], 0, "value") && sizes.agree("S", in[0], 1, "value")
        && sizes.agree("M", in[0], 2, "value") && sizes.agree("D", in[0], 3, "value")
        && sizes.agree("L", in[kSHAPES], 0, "spatial_shapes") && sizes.expect("2", 2, in[kSHAPES], 1, "spatial_shapes")
        && sizes.agree("L", in[kSTARTS], 0, "level_start_index")
        && sizes.agree("N", samples, 0, "the sampling input") && sizes.agree("Lq", samples, 1, "the sampling input")
        && sizes.agree("M", samples, 2, "the sampling input") && sizes.agree("L", samples, 3, "the sampling input")
        && sizes.agree("P", samples, 4, "the sampling input") && sizes.expect("2", 2, samples, 5, "the sampling input");
    if (ok && !mFused)
    {
        Dims const& weights = in[4];
        ok = sizes.agree("N", weights, 0, "attention_weights") && sizes.agree("Lq", weights, 1, "attention_weights")
            && sizes.agree("M", weights, 2, "attention_weights") && sizes.agree("L", weights, 3, "attention_weights")
            && sizes.agree("P", weights, 4, "attention_weights");
    }
    if (ok && mFused)
    {
        Dims const& reference = in[3];
        Dims const& logits = in[5];
        int64_t const levels = sizes.size("L");
        int64_t const points = sizes.size("P");
        ok = sizes.agree("N", reference, 0, "reference_points") && sizes.agree("Lq", reference, 1, "reference_points")
            && sizes.agree("L", reference, 2, "reference_points")
            && sizes.expect("2", 2, reference, 3, "reference_points")
            && sizes.agree("N", logits, 0, "attention_logits") && sizes.agree("Lq", logits, 1, "attention_logits")
            && sizes.agree("M", logits, 2, "attention_logits")
            && sizes.expect("L*P", levels < 0 || points < 0 ? -1 : levels * points, logits, 3, "attention_logits");
    }
    if (!ok)
    {
        return sizes.problem();
    }
    int64_t const headDim = sizes.size("D");
    if (headDim == 0 || headDim > kMAX_HEAD_DIM)
    {
        return "head dim " + std::to_string(headDim) + " is not supported: the kernels take 1 to "
            + std::to_string(kMAX_HEAD_DIM);
    }
    if (!runtime)
    {
        return "";
    }
    int64_t const n = sizes.size("N"), lq = sizes.size("Lq"), m = sizes.size("M");
    for (std::string const& overflow : {int32Overflow("value", {n, sizes.size("S"), m, headDim}),
             int32Overflow("the sampling input", {n, lq, m, sizes.size("L"), sizes.size("P"), 2}),
             int32Overflow("the output", {n, lq, m, headDim})})
    {
        if (!overflow.empty())
        {
            return overflow;
        }
    }
    return "";
}

int32_t MSDeformAttnPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* shapeInputs,
    int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    (void) shapeInputs;
    (void) nbShapeInputs;
    return guard(-1, [&] {
        std::string const problem
            = nbOutputs != 1 ? "the plugin has one output" : checkInputs(ranksOf(inputs, nbInputs));
        if (!problem.empty())
        {
            report(problem);
            return -1;
        }
        DimsExprs const& value = inputs[0];
        DimsExprs const& samples = inputs[mFused ? 4 : 3]; // [N, Lq, M, L, P, 2]
        outputs[0].nbDims = 3;
        outputs[0].d[0] = value.d[0];
        outputs[0].d[1] = samples.d[1];
        outputs[0].d[2] = exprBuilder.operation(DimensionOperation::kPROD, *value.d[2], *value.d[3]);
        return 0;
    });
}

bool MSDeformAttnPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (!isLinearTensor(pos, inOut, nbInputs, nbOutputs))
    {
        return false;
    }
    DataType const type = inOut[pos].desc.type;
    if (pos == kSHAPES || pos == kSTARTS)
    {
        return type == DataType::kINT32;
    }
    if (pos == 0 || pos == nbInputs)
    {
        return pos == 0 ? isKernelFloat(type) : type == inOut[0].desc.type; // the output in value's type
    }
    constexpr int32_t kFIRST_SAMPLING = 3;
    if (pos == kFIRST_SAMPLING)
    {
        return type == DataType::kFLOAT || type == inOut[0].desc.type; // fp32 coordinates, or value's type
    }
    return type == inOut[kFIRST_SAMPLING].desc.type; // every sampling input in one type
}

int32_t MSDeformAttnPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    (void) outputDesc;
    (void) workspace;
    return guard(-1, [&] {
        Dims const& value = inputDesc[0].dims;                // [N, S, M, D]
        Dims const& samples = inputDesc[mFused ? 4 : 3].dims; // [N, Lq, M, L, P, 2]
        int64_t const headDim = value.d[3];
        if (!isKernelFloat(inputDesc[0].type) || headDim < 1 || headDim > kMAX_HEAD_DIM)
        {
            report(std::string("no kernel for ") + typeName(inputDesc[0].type) + " with head dim "
                + std::to_string(headDim) + " (fp32 or fp16, head dim up to 64)");
            return -1;
        }
        std::string const overflow = int32Overflow("value", {value.d[0], value.d[1], value.d[2], value.d[3]})
            + int32Overflow("the sampling input",
                {samples.d[0], samples.d[1], samples.d[2], samples.d[3], samples.d[4], samples.d[5]});
        if (!overflow.empty())
        {
            report(overflow);
            return -1;
        }
        Precision const precision = precisionOf(inputDesc[0].type, inputDesc[3].type);
        Launcher const launch = kLAUNCHERS[mFused ? 1 : 0][precision][headDim > 32 ? 1 : 0];
        // plain: locations = input 3, weights = input 4; fused: reference points = input 3, offsets = 4, logits = 5
        void const* locations = inputs[mFused ? 4 : 3];
        void const* weights = inputs[mFused ? 5 : 4];
        void const* reference = inputs[3];
        CUresult const result = launch(reinterpret_cast<CUstream>(stream), device(inputs[0]),
            device(inputs[kSHAPES]), device(inputs[kSTARTS]), device(locations), device(weights), device(reference),
            device(outputs[0]), static_cast<int32_t>(value.d[1]), static_cast<int32_t>(samples.d[1]),
            static_cast<int32_t>(value.d[2]), static_cast<int32_t>(samples.d[3]), static_cast<int32_t>(samples.d[4]),
            static_cast<int32_t>(headDim), static_cast<int32_t>(value.d[0]));
        return result == CUDA_SUCCESS ? 0 : launchFailed(result);
    });
}

PluginFieldCollection const* MSDeformAttnPlugin::getFieldsToSerialize() noexcept
{
    mSerializedFused = mFused;
    mField = PluginField(M2F_MSDA_FUSED_FIELD, &mSerializedFused, PluginFieldType::kINT32, 1);
    mFields.nbFields = 1;
    mFields.fields = &mField;
    return &mFields;
}

MSDeformAttnPluginCreator::MSDeformAttnPluginCreator() noexcept
    : CreatorBase(kNAME, kVERSION, {PluginField(M2F_MSDA_FUSED_FIELD, nullptr, PluginFieldType::kINT32, 1)})
{
}

IPluginV3* MSDeformAttnPluginCreator::createPlugin(
    AsciiChar const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    (void) name;
    (void) phase;
    return guarded<IPluginV3*>(kNAME, nullptr, nullptr, [&]() -> IPluginV3* {
        int32_t fused = 0;
        std::string error;
        if (!FieldReader(fc).readInt(M2F_MSDA_FUSED_FIELD, 0, 0, 1, fused, error))
        {
            reportError(kNAME, error);
            return nullptr;
        }
        return new MSDeformAttnPlugin(fused);
    });
}

} // namespace plugin
} // namespace m2f
