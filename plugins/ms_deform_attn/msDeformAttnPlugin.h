/*
 * M2fMSDeformAttn (namespace m2f, version 1): multi-scale deformable attention on IPluginV3 (README.md here).
 *
 * Attribute fused (int32, default 0):
 *   0 plain, the Deformable-DETR contract of MultiscaleDeformableAttnPlugin_TRT:
 *     value [N, S, M, D], spatial_shapes int32 [L, 2], level_start_index int32 [L],
 *     sampling_locations [N, Lq, M, L, P, 2], attention_weights [N, Lq, M, L, P]
 *   1 fused, what Mask2Former's pixel decoder computes around the op folded in:
 *     value, spatial_shapes, level_start_index, reference_points [N, Lq, L, 2],
 *     sampling_offsets [N, Lq, M, L, P, 2] (pixels of each level), attention_logits [N, Lq, M, L*P]
 * Output [N, Lq, M*D] in value's type (fp32 or fp16); head dim D up to 64. The sampling inputs (locations and weights,
 * or reference points, offsets and logits) are all fp32 or all in value's type: an fp16 graph keeps its coordinate
 * math fp32 (docs/numerics.md).
 */
#ifndef M2F_MS_DEFORM_ATTN_PLUGIN_H
#define M2F_MS_DEFORM_ATTN_PLUGIN_H

#include "pluginBase.h"

namespace m2f
{
namespace plugin
{

class MSDeformAttnPlugin : public PluginBase
{
public:
    explicit MSDeformAttnPlugin(int32_t fused) noexcept;

    nvinfer1::IPluginV3* clone() noexcept override;
    nvinfer1::AsciiChar const* getPluginName() const noexcept override;
    nvinfer1::AsciiChar const* getPluginVersion() const noexcept override;

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
    //! One sentence when the inputs do not have the ranks and count of this form ("" when they do).
    std::string checkInputs(std::vector<int32_t> const& ranks) const;

    int32_t mFused;
    // what getFieldsToSerialize hands out, rebuilt on each call from mFused
    int32_t mSerializedFused{0};
    nvinfer1::PluginField mField{};
    nvinfer1::PluginFieldCollection mFields{};
};

class MSDeformAttnPluginCreator : public CreatorBase
{
public:
    MSDeformAttnPluginCreator() noexcept;
    nvinfer1::IPluginV3* createPlugin(nvinfer1::AsciiChar const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;
};

} // namespace plugin
} // namespace m2f

#endif
