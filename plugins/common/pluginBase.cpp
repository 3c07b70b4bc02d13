#include "pluginBase.h"

#include "m2f_kernels.h"

#include <cstdio>
#include <cstring>

using namespace nvinfer1;

namespace m2f
{
namespace plugin
{

void reportError(char const* plugin, std::string const& message) noexcept
{
    std::fprintf(stderr, "m2f plugins: %s: %s\n", plugin, message.c_str());
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

std::vector<int32_t> ranksOf(DynamicPluginTensorDesc const* tensors, int32_t n)
{
    std::vector<int32_t> ranks;
    for (int32_t i = 0; i < n; ++i)
    {
        ranks.push_back(tensors[i].desc.dims.nbDims);
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

bool isLinearTensor(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    return pos >= 0 && pos < nbInputs + nbOutputs && inOut[pos].desc.format == TensorFormat::kLINEAR;
}

bool FieldReader::readInt(char const* name, int32_t fallback, int32_t low, int32_t high, int32_t& value,
    std::string& error) const noexcept
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
    if (nbOutputs != 1 || nbInputs < 1 || !isKernelFloat(inputTypes[0]))
    {
        reportError(getPluginName(), std::string("the first input must be fp32 or fp16, not ")
                + (nbInputs < 1 ? "missing" : typeName(inputTypes[0])));
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t PluginBase::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    (void) in;
    (void) nbInputs;
    (void) out;
    (void) nbOutputs;
    return 0;
}

int32_t PluginBase::launchFailed(int result) const noexcept
{
    reportError(getPluginName(), std::string(m2f_kernels_last_error()) + " (CUDA error " + std::to_string(result)
            + ")");
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
