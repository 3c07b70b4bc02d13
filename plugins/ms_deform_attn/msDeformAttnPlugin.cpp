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

// [fused][fp16][head dim > 32]
Launcher const kLAUNCHERS[2][2][2] = {
    {{m2f_msda_fp32_d32, m2f_msda_fp32_d64}, {m2f_msda_fp16_d32, m2f_msda_fp16_d64}},
    {{m2f_msda_fused_fp32_d32, m2f_msda_fused_fp32_d64}, {m2f_msda_fused_fp16_d32, m2f_msda_fused_fp16_d64}},
};

CUdeviceptr device(void const* pointer)
{
    return reinterpret_cast<CUdeviceptr>(pointer);
}
} // namespace

MSDeformAttnPlugin::MSDeformAttnPlugin(int32_t fused) noexcept
    : mFused(fused)
{
    mField = PluginField(M2F_MSDA_FUSED_FIELD, &mFused, PluginFieldType::kINT32, 1);
    mFields.nbFields = 1;
    mFields.fields = &mField;
}

IPluginV3* MSDeformAttnPlugin::clone() noexcept
{
    return new (std::nothrow) MSDeformAttnPlugin(mFused);
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

int32_t MSDeformAttnPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    (void) out;
    std::string const problem = nbOutputs != 1 ? "the plugin has one output" : checkInputs(ranksOf(in, nbInputs));
    if (!problem.empty())
    {
        reportError(kNAME, problem);
        return -1;
    }
    int64_t const headDim = in[0].desc.dims.d[3];
    if (headDim > kMAX_HEAD_DIM)
    {
        reportError(kNAME, "head dim " + std::to_string(headDim) + " is not supported: the kernels take up to "
                + std::to_string(kMAX_HEAD_DIM));
        return -1;
    }
    return 0;
}

int32_t MSDeformAttnPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* shapeInputs,
    int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    (void) shapeInputs;
    (void) nbShapeInputs;
    std::string const problem
        = nbOutputs != 1 ? "the plugin has one output" : checkInputs(ranksOf(inputs, nbInputs));
    if (!problem.empty())
    {
        reportError(kNAME, problem);
        return -1;
    }
    DimsExprs const& value = inputs[0];
    DimsExprs const& samples = inputs[mFused ? 4 : 3]; // [N, Lq, M, L, P, 2]
    outputs[0].nbDims = 3;
    outputs[0].d[0] = value.d[0];
    outputs[0].d[1] = samples.d[1];
    outputs[0].d[2] = exprBuilder.operation(DimensionOperation::kPROD, *value.d[2], *value.d[3]);
    return 0;
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
    if (pos == 0)
    {
        return isKernelFloat(type);
    }
    return type == inOut[0].desc.type; // every other float tensor, the output included, in value's type
}

int32_t MSDeformAttnPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    (void) outputDesc;
    (void) workspace;
    Dims const& value = inputDesc[0].dims;                       // [N, S, M, D]
    Dims const& samples = inputDesc[mFused ? 4 : 3].dims;        // [N, Lq, M, L, P, 2]
    int32_t const headDim = static_cast<int32_t>(value.d[3]);
    if (!isKernelFloat(inputDesc[0].type) || headDim > kMAX_HEAD_DIM)
    {
        reportError(kNAME, std::string("no kernel for ") + typeName(inputDesc[0].type) + " with head dim "
                + std::to_string(headDim) + " (fp32 or fp16, head dim up to 64)");
        return -1;
    }
    Launcher const launch
        = kLAUNCHERS[mFused ? 1 : 0][inputDesc[0].type == DataType::kHALF ? 1 : 0][headDim > 32 ? 1 : 0];
    // plain: locations = input 3, weights = input 4; fused: reference points = input 3, offsets = 4, logits = 5
    void const* locations = inputs[mFused ? 4 : 3];
    void const* weights = inputs[mFused ? 5 : 4];
    void const* reference = inputs[3];
    CUresult const result = launch(reinterpret_cast<CUstream>(stream), device(inputs[0]), device(inputs[kSHAPES]),
        device(inputs[kSTARTS]), device(locations), device(weights), device(reference), device(outputs[0]),
        static_cast<int32_t>(value.d[1]), static_cast<int32_t>(samples.d[1]), static_cast<int32_t>(value.d[2]),
        static_cast<int32_t>(samples.d[3]), static_cast<int32_t>(samples.d[4]), headDim,
        static_cast<int32_t>(value.d[0]));
    return result == CUDA_SUCCESS ? 0 : launchFailed(result);
}

PluginFieldCollection const* MSDeformAttnPlugin::getFieldsToSerialize() noexcept
{
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
    int32_t fused = 0;
    std::string error;
    if (!FieldReader(fc).readInt(M2F_MSDA_FUSED_FIELD, 0, 0, 1, fused, error))
    {
        reportError(kNAME, error);
        return nullptr;
    }
    return new (std::nothrow) MSDeformAttnPlugin(fused);
}

} // namespace plugin
} // namespace m2f
