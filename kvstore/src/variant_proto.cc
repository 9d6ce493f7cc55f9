#include "variant_proto.h"

#include "kvtier/api/convert.h"

namespace kvtier {

Result<std::shared_ptr<const VariantMeta>> VariantMetaFromProto(const v1::ReuseMetadata& pb) {
  auto meta = std::make_shared<VariantMeta>();
  auto content = ChunkKey::FromBytes(pb.content_key());
  if (!content.ok()) return InvalidArgument("reuse.content_key: " + content.status().message());
  meta->content_key = *content;
  if (static_cast<size_t>(pb.context_keys_size()) > VariantMeta::kMaxContext) {
    return InvalidArgument("reuse.context_keys has " + std::to_string(pb.context_keys_size()) + " keys; at most " +
                           std::to_string(VariantMeta::kMaxContext) + " are allowed");
  }
  meta->context.reserve(pb.context_keys_size());
  for (int i = 0; i < pb.context_keys_size(); ++i) {
    auto key = ChunkKey::FromBytes(pb.context_keys(i));
    if (!key.ok()) return InvalidArgument("reuse.context_keys[" + std::to_string(i) + "]: " + key.status().message());
    meta->context.push_back(*key);
  }
  meta->context_attention.assign(pb.context_attention().begin(), pb.context_attention().end());
  meta->context_impact = pb.context_impact();
  meta->layer_context_impact.assign(pb.layer_context_impact().begin(), pb.layer_context_impact().end());
  meta->token_context_attention.assign(pb.token_context_attention().begin(), pb.token_context_attention().end());
  return std::shared_ptr<const VariantMeta>(std::move(meta));
}

void VariantMetaToProto(const VariantMeta& meta, v1::ReuseMetadata* pb) {
  pb->set_content_key(KeyToWire(meta.content_key));
  for (const ChunkKey& key : meta.context) pb->add_context_keys(KeyToWire(key));
  pb->mutable_context_attention()->Add(meta.context_attention.begin(), meta.context_attention.end());
  pb->set_context_impact(meta.context_impact);
  pb->mutable_layer_context_impact()->Add(meta.layer_context_impact.begin(), meta.layer_context_impact.end());
  pb->mutable_token_context_attention()->Add(meta.token_context_attention.begin(), meta.token_context_attention.end());
}

}  // namespace kvtier
