// Conversion of variant reuse metadata between the wire (v1::ReuseMetadata) and the index (VariantMeta).
// Stateless; thread-safe.
#pragma once

#include <memory>

#include "kvtier/kvstore/variant_index.h"
#include "kvtier/v1/kvtier.pb.h"

namespace kvtier {

// INVALID_ARGUMENT naming the field when a key is not 16 bytes or there are more than
// VariantMeta::kMaxContext context keys. Values are checked by the Store (VariantMeta::Validate).
Result<std::shared_ptr<const VariantMeta>> VariantMetaFromProto(const v1::ReuseMetadata& pb);
void VariantMetaToProto(const VariantMeta& meta, v1::ReuseMetadata* pb);

}  // namespace kvtier
