/*
 * What m2f's TensorRT plugins share: the IPluginV3 capability plumbing, attribute parsing, error reporting.
 *
 * The library includes only NvInferRuntime.h, links neither libnvinfer nor libcuda (the kernels load libcuda.so.1
 * at first use, plugins/common/m2f_kernels.h), and never dereferences TensorRT's logger: errors go to stderr as
 * "m2f plugins: <plugin>: <one sentence>". That keeps the library loadable and inspectable on a machine without a
 * GPU or TensorRT (the test harness does exactly that).
 */
#ifndef M2F_PLUGIN_BASE_H
#define M2F_PLUGIN_BASE_H

#include "m2f_op_contracts.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace m2f
{
namespace plugin
{

constexpr char const* kNAMESPACE = M2F_PLUGIN_NAMESPACE; // m2f_op_contracts.h, from the ops' contract.py

//! One line on stderr, prefixed with the plugin's name.
void reportError(char const* plugin, std::string const& message) noexcept;

//! True for the float types the kernels take (fp32, fp16).
inline bool isKernelFloat(nvinfer1::DataType type) noexcept
{
    return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF;
}

//! A readable name of a data type for messages.
char const* typeName(nvinfer1::DataType type) noexcept;

//! The ranks (dimension counts) of `n` tensors, for the plugins' input checks at build and shape time.
std::vector<int32_t> ranksOf(nvinfer1::DynamicPluginTensorDesc const* tensors, int32_t n);
std::vector<int32_t> ranksOf(nvinfer1::DimsExprs const* tensors, int32_t n);

//! "" when every input i has rank want[i] (the caller has checked the input count), else one sentence naming the
//! first that does not, ending with `hint`.
std::string wrongRank(std::vector<int32_t> const& ranks, int32_t const* want, char const* hint);

//! Whether `pos` is one of the node's tensors and in the linear format, the only one m2f's kernels read.
bool isLinearTensor(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept;

//! Reads int32 attributes out of a PluginFieldCollection; unknown fields are ignored (the ONNX parser passes only
//! the names of getFieldNames()), known ones are checked for type, length and range.
class FieldReader
{
public:
    explicit FieldReader(nvinfer1::PluginFieldCollection const* fields) noexcept
        : mFields(fields)
    {
    }

    //! The value of `name` (or `fallback` when absent) within [low, high]; false with `error` set otherwise.
    bool readInt(char const* name, int32_t fallback, int32_t low, int32_t high, int32_t& value,
        std::string& error) const noexcept;

private:
    nvinfer1::PluginFieldCollection const* mFields;
};

//! The capability plumbing and the parts every m2f plugin has in common: one output of input 0's type, linear
//! formats, no workspace, clone on attach. Subclasses give the name, version, shapes, checks and the launch.
class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime
{
public:
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;

    nvinfer1::AsciiChar const* getPluginNamespace() const noexcept override
    {
        return kNAMESPACE;
    }

    int32_t getNbOutputs() const noexcept override
    {
        return 1;
    }

    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;

    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;

    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override
    {
        (void) context;
        return clone();
    }

protected:
    //! Reports a failed kernel launch (the kernels' own sentence) and returns the enqueue error code.
    int32_t launchFailed(int result) const noexcept;
};

//! The creator plumbing: name, version, namespace and the attribute list.
class CreatorBase : public nvinfer1::IPluginCreatorV3One
{
public:
    CreatorBase(char const* name, char const* version, std::vector<nvinfer1::PluginField> fields) noexcept;

    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override
    {
        return &mFieldNames;
    }

    nvinfer1::AsciiChar const* getPluginName() const noexcept override
    {
        return mName;
    }

    nvinfer1::AsciiChar const* getPluginVersion() const noexcept override
    {
        return mVersion;
    }

    nvinfer1::AsciiChar const* getPluginNamespace() const noexcept override
    {
        return kNAMESPACE;
    }

private:
    char const* mName;
    char const* mVersion;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldNames{};
};

} // namespace plugin
} // namespace m2f

#endif
