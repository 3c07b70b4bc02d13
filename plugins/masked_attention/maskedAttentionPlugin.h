/*
 * M2fMaskedAttention (namespace m2f, version 1): Mask2Former's masked cross-attention on IPluginV3 (README.md here).
 *
 * Inputs: q [N, M, Q, D], k [N, M, S, D], v [N, M, S, D] (fp32 or fp16, one type), and optionally mask_logits
 * [N, Q, S] (always fp32: the decision sigmoid(logit) < 0.5 is made in fp32, docs/numerics.md). A query whose keys are
 * all blocked attends to every key (the empty-row rule), so the output is never NaN. Output [N, M, Q, D] in q's
 * type; head dim D up to 64. No attributes.
 */
#ifndef M2F_MASKED_ATTENTION_PLUGIN_H
#define M2F_MASKED_ATTENTION_PLUGIN_H

#include "pluginBase.h"

namespace m2f
{
namespace plugin
{

class MaskedAttentionPlugin : public PluginBase
{
public:
    MaskedAttentionPlugin() noexcept = default;

    nvinfer1::IPluginV3* clone() noexcept override;
    nvinfer1::AsciiChar const* getPluginName() const noexcept override;
    nvinfer1::AsciiChar const* getPluginVersion() const noexcept override;

    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;

    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

protected:
    std::string checkShapes(std::vector<nvinfer1::Dims> const& inputs, int32_t nbOutputs, bool runtime) const override;

private:
    nvinfer1::PluginFieldCollection mFields{};
    bool mHasMask{true};
};

class MaskedAttentionPluginCreator : public CreatorBase
{
public:
    MaskedAttentionPluginCreator() noexcept;
    nvinfer1::IPluginV3* createPlugin(nvinfer1::AsciiChar const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;
};

} // namespace plugin
} // namespace m2f

#endif
