#include "maskedAttentionPlugin.h"

#include "m2f_masked_attention.h"

#include <cmath>
#include <new>

using namespace nvinfer1;

namespace m2f
{
namespace plugin
{
namespace
{
// the op's contract (m2f_op_contracts.h, generated from contract.py)
constexpr char const* kNAME = M2F_MASKED_ATTENTION_NAME;
constexpr char const* kVERSION = M2F_MASKED_ATTENTION_VERSION;
constexpr int32_t kMAX_HEAD_DIM = M2F_MASKED_ATTENTION_MAX_HEAD_DIM;
constexpr int32_t kMASK = M2F_MASKED_ATTENTION_INPUTS - 1; // position of mask_logits among the inputs
constexpr int32_t kRANKS[M2F_MASKED_ATTENTION_INPUTS] = M2F_MASKED_ATTENTION_RANKS; // q, k, v; mask_logits

using Launcher = CUresult (*)(CUstream, CUdeviceptr, CUdeviceptr, CUdeviceptr, CUdeviceptr, CUdeviceptr, int32_t,
    int32_t, int32_t, int32_t, float, float, int32_t);

// [with mask][fp16][head dim > 32]
Launcher const kLAUNCHERS[2][2][2] = {
    {{m2f_masked_attention_nomask_fp32_d32, m2f_masked_attention_nomask_fp32_d64},
        {m2f_masked_attention_nomask_fp16_d32, m2f_masked_attention_nomask_fp16_d64}},
    {{m2f_masked_attention_fp32_d32, m2f_masked_attention_fp32_d64},
        {m2f_masked_attention_fp16_d32, m2f_masked_attention_fp16_d64}},
};

CUdeviceptr device(void const* pointer)
{
    return reinterpret_cast<CUdeviceptr>(pointer);
}

//! One sentence when the inputs are not q, k, v [N, M, *, D] (and mask logits [N, Q, S]); "" when they are.
std::string checkRanks(std::vector<int32_t> const& ranks, int32_t nbOutputs)
{
    if (nbOutputs != 1 || ranks.size() < 3 || ranks.size() > 4)
    {
        return "takes q, k, v and optionally mask_logits (3 or 4 inputs) and has one output; got "
            + std::to_string(ranks.size()) + " inputs";
    }
    return wrongRank(ranks, kRANKS, "");
}
} // namespace

IPluginV3* MaskedAttentionPlugin::clone() noexcept
{
    auto* copy = new (std::nothrow) MaskedAttentionPlugin();
    if (copy != nullptr)
    {
        copy->mHasMask = mHasMask;
    }
    return copy;
}

AsciiChar const* MaskedAttentionPlugin::getPluginName() const noexcept
{
    return kNAME;
}

AsciiChar const* MaskedAttentionPlugin::getPluginVersion() const noexcept
{
    return kVERSION;
}

int32_t MaskedAttentionPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    (void) out;
    std::string const problem = checkRanks(ranksOf(in, nbInputs), nbOutputs);
    if (!problem.empty())
    {
        reportError(kNAME, problem);
        return -1;
    }
    mHasMask = nbInputs == 4;
    if (in[0].desc.dims.d[3] > kMAX_HEAD_DIM)
    {
        reportError(kNAME, "head dim " + std::to_string(in[0].desc.dims.d[3])
                + " is not supported: the kernels take up to " + std::to_string(kMAX_HEAD_DIM));
        return -1;
    }
    return 0;
}

int32_t MaskedAttentionPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* shapeInputs,
    int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    (void) shapeInputs;
    (void) nbShapeInputs;
    (void) exprBuilder;
    std::string const problem = checkRanks(ranksOf(inputs, nbInputs), nbOutputs);
    if (!problem.empty())
    {
        reportError(kNAME, problem);
        return -1;
    }
    outputs[0] = inputs[0]; // [N, M, Q, D], as q
    return 0;
}

bool MaskedAttentionPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (!isLinearTensor(pos, inOut, nbInputs, nbOutputs))
    {
        return false;
    }
    DataType const type = inOut[pos].desc.type;
    if (pos == 0)
    {
        return isKernelFloat(type);
    }
    if (pos == kMASK && nbInputs == 4)
    {
        return type == DataType::kFLOAT; // the 0.5 threshold is decided in fp32
    }
    return type == inOut[0].desc.type; // k, v and the output in q's type
}

int32_t MaskedAttentionPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    (void) outputDesc;
    (void) workspace;
    Dims const& q = inputDesc[0].dims; // [N, M, Q, D]
    Dims const& k = inputDesc[1].dims; // [N, M, S, D]
    int32_t const headDim = static_cast<int32_t>(q.d[3]);
    if (!isKernelFloat(inputDesc[0].type) || headDim > kMAX_HEAD_DIM)
    {
        reportError(kNAME, std::string("no kernel for ") + typeName(inputDesc[0].type) + " with head dim "
                + std::to_string(headDim) + " (fp32 or fp16, head dim up to 64)");
        return -1;
    }
    Launcher const launch = kLAUNCHERS[mHasMask ? 1 : 0][inputDesc[0].type == DataType::kHALF ? 1 : 0]
                                      [headDim > 32 ? 1 : 0];
    void const* mask = mHasMask ? inputs[kMASK] : inputs[0]; // the kernel without a mask never reads it
    CUresult const result = launch(reinterpret_cast<CUstream>(stream), device(inputs[0]), device(inputs[1]),
        device(inputs[2]), device(mask), device(outputs[0]), static_cast<int32_t>(q.d[2]),
        static_cast<int32_t>(k.d[2]), static_cast<int32_t>(q.d[1]), headDim,
        1.0F / std::sqrt(static_cast<float>(headDim)), M2F_MASKED_ATTENTION_BLOCKED_BELOW,
        static_cast<int32_t>(q.d[0]));
    return result == CUDA_SUCCESS ? 0 : launchFailed(result);
}

int32_t MaskedAttentionPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    (void) in;
    (void) out;
    (void) nbOutputs;
    mHasMask = nbInputs == 4; // enqueue is not told how many inputs there are
    return 0;
}

PluginFieldCollection const* MaskedAttentionPlugin::getFieldsToSerialize() noexcept
{
    return &mFields;
}

MaskedAttentionPluginCreator::MaskedAttentionPluginCreator() noexcept
    : CreatorBase(kNAME, kVERSION, {})
{
}

IPluginV3* MaskedAttentionPluginCreator::createPlugin(
    AsciiChar const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    (void) name;
    (void) fc;
    (void) phase;
    return new (std::nothrow) MaskedAttentionPlugin();
}

} // namespace plugin
} // namespace m2f
