#include "pluginBase.h"

#include "m2f_kernels.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <limits>

using namespace nvinfer1;

namespace m2f
{
namespace plugin
{
namespace
{
std::atomic<ILoggerFinder*> gLoggerFinder{nullptr};

//! "m2f plugins: <plugin>: <message>" into `buffer` (truncated to fit; no allocation).
void format(char* buffer, size_t size, char const* plugin, char const* message) noexcept
{
    std::snprintf(buffer, size, "m2f plugins: %s: %s", plugin ? plugin : "?", message ? message : "?");
}
} // namespace

void setLoggerFinder(ILoggerFinder* finder) noexcept
{
    gLoggerFinder.store(finder);
}

void reportError(char const* plugin, char const* message, IErrorRecorder* recorder) noexcept
{
    char line[1024];
    format(line, sizeof line, plugin, message);
    if (recorder != nullptr && recorder->reportError(ErrorCode::kINVALID_ARGUMENT, line))
    {
        return;
    }
    ILoggerFinder* finder = gLoggerFinder.load();
    ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr; // on the calling thread, as documented
    if (logger != nullptr)
    {
        logger->log(ILogger::Severity::kERROR, line);
        return;
    }
    std::fprintf(stderr, "%s\n", line);
}

void reportError(char const* plugin, std::string const& message, IErrorRecorder* recorder) noexcept
{
    reportError(plugin, message.c_str(), recorder);
}

char const* typeName(DataType type) noexcept
{
    switch (type)
    {
    case DataType::kFLOAT: return "fp32";
    case DataType::kHALF: return "fp16";
    case DataType::kINT8: return "int8";
    case DataType::kINT32: return "int32";
    case DataType::kBOOL: return "bool";
    case DataType::kUINT8: return "uint8";
    case DataType::kINT64: return "int64";
    case DataType::kBF16: return "bf16";
    default: return "another type";
    }
}

std::vector<Dims> dimsOf(DynamicPluginTensorDesc const* tensors, int32_t n)
{
    std::vector<Dims> dims;
    for (int32_t i = 0; i < n; ++i)
    {
        dims.push_back(tensors[i].desc.dims);
    }
    return dims;
}

std::vector<Dims> dimsOf(PluginTensorDesc const* tensors, int32_t n)
{
    std::vector<Dims> dims;
    for (int32_t i = 0; i < n; ++i)
    {
        dims.push_back(tensors[i].dims);
    }
    return dims;
}

std::vector<int32_t> ranksOf(std::vector<Dims> const& dims)
{
    std::vector<int32_t> ranks;
    for (Dims const& d : dims)
    {
        ranks.push_back(d.nbDims);
    }
    return ranks;
}

std::vector<int32_t> ranksOf(DimsExprs const* tensors, int32_t n)
{
    std::vector<int32_t> ranks;
    for (int32_t i = 0; i < n; ++i)
    {
        ranks.push_back(tensors[i].nbDims);
    }
    return ranks;
}

std::string wrongRank(std::vector<int32_t> const& ranks, int32_t const* want, char const* hint)
{
    for (size_t i = 0; i < ranks.size(); ++i)
    {
        if (ranks[i] != want[i])
        {
            return "input " + std::to_string(i) + " has rank " + std::to_string(ranks[i]) + "; it must have rank "
                + std::to_string(want[i]) + hint;
        }
    }
    return "";
}

bool SizeAgreement::agree(char const* name, Dims const& dims, int32_t axis, char const* tensorName)
{
    return expect(name, size(name), dims, axis, tensorName);
}

bool SizeAgreement::expect(char const* name, int64_t value, Dims const& dims, int32_t axis, char const* tensorName)
{
    int64_t const got = dims.d[axis];
    std::string const where = std::string(tensorName) + " dim " + std::to_string(axis);
    if (got >= 0 && value >= 0 && got != value)
    {
        std::string source = "as the other inputs say";
        for (auto const& entry : mSizes)
        {
            if (entry.first == name && entry.second.first == value)
            {
                source = "from " + entry.second.second;
            }
        }
        mProblem = "the inputs disagree on " + std::string(name) + ": " + where + " is " + std::to_string(got)
            + " but " + name + " is " + std::to_string(value) + " (" + source + ")";
        return false;
    }
    if (got >= 0 && size(name) < 0)
    {
        mSizes.push_back({name, {got, where}});
    }
    return true;
}

int64_t SizeAgreement::size(char const* name) const
{
    for (auto const& entry : mSizes)
    {
        if (entry.first == name)
        {
            return entry.second.first;
        }
    }
    return -1;
}

std::string int32Overflow(char const* what, std::vector<int64_t> const& factors)
{
    int64_t product = 1;
    for (int64_t f : factors)
    {
        if (f < 0)
        {
            return "";
        }
        if (f != 0 && product > std::numeric_limits<int32_t>::max() / f)
        {
            product = -1;
            break;
        }
        product *= f;
    }
    if (product >= 0 && product <= std::numeric_limits<int32_t>::max())
    {
        return "";
    }
    return std::string(what) + " has more than 2^31 - 1 elements, beyond the kernels' int32 indexing; run a smaller "
                               "batch or canvas";
}

bool isLinearTensor(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    return pos >= 0 && pos < nbInputs + nbOutputs && inOut[pos].desc.format == TensorFormat::kLINEAR;
}

bool FieldReader::readInt(char const* name, int32_t fallback, int32_t low, int32_t high, int32_t& value,
    std::string& error) const
{
    value = fallback;
    if (mFields == nullptr)
    {
        return true;
    }
    for (int32_t i = 0; i < mFields->nbFields; ++i)
    {
        PluginField const& field = mFields->fields[i];
        if (field.name == nullptr || std::strcmp(field.name, name) != 0)
        {
            continue;
        }
        if (field.type != PluginFieldType::kINT32 || field.length != 1 || field.data == nullptr)
        {
            error = std::string("attribute '") + name + "' must be one int32";
            return false;
        }
        value = *static_cast<int32_t const*>(field.data);
        if (value < low || value > high)
        {
            error = std::string("attribute '") + name + "' is " + std::to_string(value) + "; it must be within "
                + std::to_string(low) + ".." + std::to_string(high);
            return false;
        }
    }
    return true;
}

IPluginCapability* PluginBase::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

int32_t PluginBase::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    return guard(-1, [&] {
        if (nbOutputs != 1 || nbInputs < 1 || !isKernelFloat(inputTypes[0]))
        {
            report(std::string("the first input must be fp32 or fp16, not ")
                + (nbInputs < 1 ? "missing" : typeName(inputTypes[0])));
            return -1;
        }
        outputTypes[0] = inputTypes[0];
        return 0;
    });
}

int32_t PluginBase::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    (void) out;
    return guard(-1, [&] {
        std::string const problem = checkShapes(dimsOf(in, nbInputs), nbOutputs, false);
        if (!problem.empty())
        {
            report(problem);
            return -1;
        }
        return 0;
    });
}

int32_t PluginBase::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    (void) out;
    return guard(-1, [&] {
        std::string const problem = checkShapes(dimsOf(in, nbInputs), nbOutputs, true);
        if (!problem.empty())
        {
            report(problem);
            return -1;
        }
        return 0;
    });
}

IPluginV3* PluginBase::attachToContext(IPluginResourceContext* context) noexcept
{
    return guard<IPluginV3*>(nullptr, [&]() -> IPluginV3* {
        auto* copy = static_cast<PluginBase*>(clone());
        if (copy != nullptr && context != nullptr)
        {
            copy->mRecorder = context->getErrorRecorder();
        }
        return copy;
    });
}

void PluginBase::report(std::string const& message) const noexcept
{
    reportError(getPluginName(), message, mRecorder);
}

int32_t PluginBase::launchFailed(int result) const noexcept
{
    char line[768];
    std::snprintf(line, sizeof line, "%s (CUDA error %d)", m2f_kernels_last_error(), result);
    reportError(getPluginName(), line, mRecorder);
    return -1;
}

CreatorBase::CreatorBase(char const* name, char const* version, std::vector<PluginField> fields) noexcept
    : mName(name)
    , mVersion(version)
    , mFields(std::move(fields))
{
    mFieldNames.nbFields = static_cast<int32_t>(mFields.size());
    mFieldNames.fields = mFields.empty() ? nullptr : mFields.data();
}

} // namespace plugin
} // namespace m2f
