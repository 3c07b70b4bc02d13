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
    return guard<IPluginV3*>(nullptr, [&]() -> IPluginV3* {
        auto* copy = new MaskedAttentionPlugin();
        copy->mHasMask = mHasMask;
        copy->mRecorder = mRecorder;
        return copy;
    });
}

AsciiChar const* MaskedAttentionPlugin::getPluginName() const noexcept
{
    return kNAME;
}

AsciiChar const* MaskedAttentionPlugin::getPluginVersion() const noexcept
{
    return kVERSION;
}

std::string MaskedAttentionPlugin::checkShapes(std::vector<Dims> const& in, int32_t nbOutputs, bool runtime) const
{
    std::string const problem = checkRanks(ranksOf(in), nbOutputs);
    if (!problem.empty())
    {
        return problem;
    }
    // q [N, M, Q, D]; k, v [N, M, S, D]; mask_logits [N, Q, S]
    SizeAgreement sizes;
    bool ok = sizes.agree("N", in[0], 0, "q") && sizes.agree("M", in[0], 1, "q") && sizes.agree("Q", in[0], 2, "q")
        && sizes.agree("D", in[0], 3, "q");
    for (int32_t i = 1; ok && i < 3; ++i)
    {
        char const* name = i == 1 ? "k" : "v";
        ok = sizes.agree("N", in[i], 0, name) && sizes.agree("M", in[i], 1, name) && sizes.agree("S", in[i], 2, name)
            && sizes.agree("D", in[i], 3, name);
    }
    if (ok && in.size() == 4)
    {
        ok = sizes.agree("N", in[kMASK], 0, "mask_logits") && sizes.agree("Q", in[kMASK], 1, "mask_logits")
            && sizes.agree("S", in[kMASK], 2, "mask_logits");
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
    int64_t const n = sizes.size("N"), m = sizes.size("M"), q = sizes.size("Q"), s = sizes.size("S");
    for (std::string const& overflow : {int32Overflow("q", {n, m, q, headDim}), int32Overflow("k", {n, m, s, headDim}),
             int32Overflow("mask_logits", {n, q, s})})
    {
        if (!overflow.empty())
        {
            return overflow;
        }
    }
    return "";
}

int32_t MaskedAttentionPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    int32_t const status = PluginBase::configurePlugin(in, nbInputs, out, nbOutputs);
    mHasMask = nbInputs == 4;
    return status;
}

int32_t MaskedAttentionPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    mHasMask = nbInputs == 4; // enqueue is not told how many inputs there are
    return PluginBase::onShapeChange(in, nbInputs, out, nbOutputs);
}

int32_t MaskedAttentionPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* shapeInputs,
    int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    (void) shapeInputs;
    (void) nbShapeInputs;
    (void) exprBuilder;
    return guard(-1, [&] {
        std::string const problem = checkRanks(ranksOf(inputs, nbInputs), nbOutputs);
        if (!problem.empty())
        {
            report(problem);
            return -1;
        }
        outputs[0] = inputs[0]; // [N, M, Q, D], as q
        return 0;
    });
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
    return guard(-1, [&] {
        Dims const& q = inputDesc[0].dims; // [N, M, Q, D]
        Dims const& k = inputDesc[1].dims; // [N, M, S, D]
        int64_t const headDim = q.d[3];
        if (!isKernelFloat(inputDesc[0].type) || headDim < 1 || headDim > kMAX_HEAD_DIM)
        {
            report(std::string("no kernel for ") + typeName(inputDesc[0].type) + " with head dim "
                + std::to_string(headDim) + " (fp32 or fp16, head dim up to 64)");
            return -1;
        }
        std::string const overflow = int32Overflow("q", {q.d[0], q.d[1], q.d[2], q.d[3]})
            + int32Overflow("k", {k.d[0], k.d[1], k.d[2], k.d[3]}) + int32Overflow("mask_logits", {q.d[0], q.d[2], k.d[2]});
        if (!overflow.empty())
        {
            report(overflow);
            return -1;
        }
        Launcher const launch = kLAUNCHERS[mHasMask ? 1 : 0][inputDesc[0].type == DataType::kHALF ? 1 : 0]
                                          [headDim > 32 ? 1 : 0];
        void const* mask = mHasMask ? inputs[kMASK] : inputs[0]; // the kernel without a mask never reads it
        CUresult const result = launch(reinterpret_cast<CUstream>(stream), device(inputs[0]), device(inputs[1]),
            device(inputs[2]), device(mask), device(outputs[0]), static_cast<int32_t>(q.d[2]),
            static_cast<int32_t>(k.d[2]), static_cast<int32_t>(q.d[1]), static_cast<int32_t>(headDim),
            1.0F / std::sqrt(static_cast<float>(headDim)), M2F_MASKED_ATTENTION_BLOCKED_BELOW,
            static_cast<int32_t>(q.d[0]));
        return result == CUDA_SUCCESS ? 0 : launchFailed(result);
    });
}

PluginFieldCollection const* MaskedAttentionPlugin::getFieldsToSerialize() noexcept
{
    mFields.nbFields = 0; // no attributes
    mFields.fields = nullptr;
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
    return guarded<IPluginV3*>(kNAME, nullptr, nullptr, []() -> IPluginV3* { return new MaskedAttentionPlugin(); });
}

} // namespace plugin
} // namespace m2f
