/*
 * What m2f's TensorRT plugins share: the IPluginV3 capability plumbing, attribute parsing, shape agreement checks and
 * error reporting.
 *
 * The library includes only NvInferRuntime.h and links neither libnvinfer nor libcuda (the kernels load libcuda.so.1
 * at first use, plugins/common/m2f_kernels.h), so it loads and can be probed on a machine without a GPU or TensorRT.
 * Messages are one sentence, "m2f plugins: <plugin>: <sentence>", to the error recorder of the execution context the
 * plugin runs in (attachToContext), else to the logger TensorRT hands over through setLoggerFinder, else to stderr.
 * Every entry point TensorRT calls is noexcept and runs its body through `guarded`, so nothing it throws (a failed
 * allocation, say) can terminate the process: it is reported and the call fails.
 */
#ifndef M2F_PLUGIN_BASE_H
#define M2F_PLUGIN_BASE_H

#include "m2f_op_contracts.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <exception>
#include <string>
#include <utility>
#include <vector>

namespace m2f
{
namespace plugin
{

constexpr char const* kNAMESPACE = M2F_PLUGIN_NAMESPACE; // m2f_op_contracts.h, from the ops' contract.py

//! Where messages go when no error recorder is at hand: the logger `finder` finds (TensorRT's setLoggerFinder).
void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

//! One sentence about `plugin`: to `recorder` when given, else to TensorRT's logger, else to stderr.
void reportError(char const* plugin, char const* message, nvinfer1::IErrorRecorder* recorder = nullptr) noexcept;
void reportError(char const* plugin, std::string const& message, nvinfer1::IErrorRecorder* recorder = nullptr) noexcept;

//! `body()`, or `failure` when it throws: the exception is reported, never let out of a noexcept entry point.
template <typename R, typename Body>
R guarded(char const* plugin, nvinfer1::IErrorRecorder* recorder, R failure, Body&& body) noexcept
{
    try
    {
        return body();
    }
    catch (std::exception const& e)
    {
        reportError(plugin, e.what(), recorder);
    }
    catch (...)
    {
        reportError(plugin, "an unknown internal error", recorder);
    }
    return failure;
}

//! True for the float types the kernels take (fp32, fp16).
inline bool isKernelFloat(nvinfer1::DataType type) noexcept
{
    return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF;
}

//! A readable name of a data type for messages.
char const* typeName(nvinfer1::DataType type) noexcept;

//! The dims of `n` tensors, for the plugins' shape checks at build time (-1 where not known yet) and run time.
std::vector<nvinfer1::Dims> dimsOf(nvinfer1::DynamicPluginTensorDesc const* tensors, int32_t n);
std::vector<nvinfer1::Dims> dimsOf(nvinfer1::PluginTensorDesc const* tensors, int32_t n);
//! The ranks (dimension counts) of `n` tensors.
std::vector<int32_t> ranksOf(std::vector<nvinfer1::Dims> const& dims);
std::vector<int32_t> ranksOf(nvinfer1::DimsExprs const* tensors, int32_t n);

//! "" when every input i has rank want[i] (the caller has checked the input count), else one sentence naming the
//! first that does not, ending with `hint`.
std::string wrongRank(std::vector<int32_t> const& ranks, int32_t const* want, char const* hint);

//! The named sizes of a node (N, Lq, M, D ...) across its inputs: the first tensor that knows a size sets it, every
//! later one must agree. A size of -1 (not known before the build picks shapes) is skipped.
class SizeAgreement
{
public:
    //! Records dim `axis` of input `tensor` (named `tensorName`) as size `name`; false, with problem() set, when it
    //! differs from the size already recorded.
    bool agree(char const* name, nvinfer1::Dims const& dims, int32_t axis, char const* tensorName);
    //! Like agree, for a size that must equal `value` (a constant, or a product of recorded sizes; -1: unknown).
    bool expect(char const* name, int64_t value, nvinfer1::Dims const& dims, int32_t axis, char const* tensorName);
    //! The recorded size (-1 when no tensor knew it).
    int64_t size(char const* name) const;
    std::string const& problem() const
    {
        return mProblem;
    }

private:
    std::vector<std::pair<std::string, std::pair<int64_t, std::string>>> mSizes; // name -> (size, where it came from)
    std::string mProblem;
};

//! "" when the product of `factors` (all known) fits the int32 indexing of the kernels, else one sentence naming
//! `what`.
std::string int32Overflow(char const* what, std::vector<int64_t> const& factors);

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
        std::string& error) const;

private:
    nvinfer1::PluginFieldCollection const* mFields;
};

//! The capability plumbing and the parts every m2f plugin has in common: one output of input 0's type, linear
//! formats, no workspace, clone on attach (keeping the context's error recorder). Subclasses give the name,
//! version, shapes, checks and the launch. Not copyable: TensorRT clones through clone().
class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime
{
public:
    PluginBase() noexcept = default;
    PluginBase(PluginBase const&) = delete;
    PluginBase& operator=(PluginBase const&) = delete;

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

    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;

    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;

    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;

protected:
    //! One sentence about this plugin, where its messages go (the header comment).
    void report(std::string const& message) const noexcept;

    //! `body()` with this plugin's name and error recorder, `failure` when it throws.
    template <typename R, typename Body>
    R guard(R failure, Body&& body) const noexcept
    {
        return guarded(getPluginName(), mRecorder, failure, std::forward<Body>(body));
    }

    //! "" when the node's inputs (their dims; -1 where unknown) are consistent and the kernels take them (ranks,
    //! sizes that agree across inputs, head dim), else one sentence. `runtime`: the dims are the actual ones, so the
    //! int32 indexing limits are checked too.
    virtual std::string checkShapes(std::vector<nvinfer1::Dims> const& inputs, int32_t nbOutputs, bool runtime) const
        = 0;

    //! Reports a failed kernel launch (the kernels' own sentence) and returns the enqueue error code.
    int32_t launchFailed(int result) const noexcept;

    nvinfer1::IErrorRecorder* mRecorder{nullptr};
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
