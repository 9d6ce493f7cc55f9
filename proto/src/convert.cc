#include "kvtier/api/convert.h"

namespace kvtier {

ModelFingerprint FromProto(const v1::ModelFingerprint& pb) {
  ModelFingerprint fp;
  fp.model_id = pb.model_id();
  fp.num_layers = pb.num_layers();
  fp.num_kv_heads = pb.num_kv_heads();
  fp.head_dim = pb.head_dim();
  // Out-of-range enum values survive the cast and are refused by Validate().
  fp.dtype = static_cast<DType>(static_cast<uint8_t>(pb.dtype() & 0xff) == pb.dtype() ? pb.dtype() : 0xff);
  fp.rope_theta = pb.rope_theta();
  fp.rope_style = static_cast<RopeStyle>(pb.rope_style() >= 0 && pb.rope_style() < 0xff ? pb.rope_style() : 0xff);
  fp.rotary_dim = pb.rotary_dim();
  fp.keys_post_rope = pb.keys_post_rope();
  fp.chunk_tokens = pb.chunk_tokens();
  return fp;
}

void ToProto(const ModelFingerprint& fp, v1::ModelFingerprint* pb) {
  pb->set_model_id(fp.model_id);
  pb->set_num_layers(fp.num_layers);
  pb->set_num_kv_heads(fp.num_kv_heads);
  pb->set_head_dim(fp.head_dim);
  pb->set_dtype(static_cast<v1::DType>(fp.dtype));
  pb->set_rope_theta(fp.rope_theta);
  pb->set_rope_style(static_cast<v1::RopeStyle>(fp.rope_style));
  pb->set_rotary_dim(fp.rotary_dim);
  pb->set_keys_post_rope(fp.keys_post_rope);
  pb->set_chunk_tokens(fp.chunk_tokens);
}

grpc::Status ToGrpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return Status::Ok();
  return Status(static_cast<StatusCode>(status.error_code()), status.error_message());
}

}  // namespace kvtier
