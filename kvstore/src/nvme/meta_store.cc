#include "meta_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <bit>
#include <cstring>

namespace kvtier {
namespace {

constexpr uint8_t kIndexVersion = 1;
constexpr uint8_t kFingerprintVersion = 1;
constexpr uint8_t kProfileVersion = 1;
constexpr uint8_t kVariantVersion = 1;
constexpr uint32_t kMaxVariantFloats = 1u << 20;  // per array; far above any real layer or token count

static_assert(std::endian::native == std::endian::little, "meta store values are little-endian");

class Writer {
 public:
  template <typename T>
  Writer& Put(T v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof(v));
    return *this;
  }
  Writer& Bytes(const void* p, size_t n) {
    out_.append(static_cast<const char*>(p), n);
    return *this;
  }
  Writer& Key(const ChunkKey& k) {
    const auto b = k.ToBytes();
    return Bytes(b.data(), b.size());
  }
  Writer& Floats(const std::vector<float>& v) {
    Put(static_cast<uint32_t>(v.size()));
    return Bytes(v.data(), v.size() * sizeof(float));
  }
  const std::string& view() const { return out_; }
  std::string str() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(rocksdb::Slice s) : p_(s.data()), left_(s.size()) {}
  template <typename T>
  bool Get(T* v) {
    if (left_ < sizeof(T)) return false;
    std::memcpy(v, p_, sizeof(T));
    p_ += sizeof(T);
    left_ -= sizeof(T);
    return true;
  }
  bool Bytes(std::string* out, size_t n) {
    if (left_ < n) return false;
    out->assign(p_, n);
    p_ += n;
    left_ -= n;
    return true;
  }
  bool Key(ChunkKey* k) {
    if (left_ < 16) return false;
    auto parsed = ChunkKey::FromBytes(std::string_view(p_, 16));
    p_ += 16;
    left_ -= 16;
    if (!parsed.ok()) return false;
    *k = *parsed;
    return true;
  }
  // A u32 count then that many floats; false past `max` or the value's end (checked before allocating).
  bool Floats(std::vector<float>* v, uint32_t max) {
    uint32_t n = 0;
    if (!Get(&n) || n > max || left_ < size_t{n} * sizeof(float)) return false;
    v->resize(n);
    std::memcpy(v->data(), p_, size_t{n} * sizeof(float));
    p_ += size_t{n} * sizeof(float);
    left_ -= size_t{n} * sizeof(float);
    return true;
  }
  bool done() const { return left_ == 0; }

 private:
  const char* p_;
  size_t left_;
};

std::string IdKey(char tag, uint32_t id) {
  std::string k(1, tag);
  for (int i = 3; i >= 0; --i) k.push_back(static_cast<char>(id >> (8 * i)));  // big-endian: ordered scans
  return k;
}

std::string ChunkIndexKey(uint32_t ns_id, const ChunkKey& key) {
  std::string k = IdKey('c', ns_id);
  const auto b = key.ToBytes();
  k.append(reinterpret_cast<const char*>(b.data()), b.size());
  return k;
}

std::string VariantRecordKey(uint32_t ns_id, const ChunkKey& variant_key) {
  std::string k = IdKey('v', ns_id);
  const auto b = variant_key.ToBytes();
  k.append(reinterpret_cast<const char*>(b.data()), b.size());
  return k;
}

std::string ProfileKey(uint32_t ns_id, uint64_t id) {
  std::string k = IdKey('p', ns_id);
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>(id >> (8 * i)));
  return k;
}

uint32_t IdOf(rocksdb::Slice key) {
  uint32_t id = 0;
  for (int i = 1; i <= 4; ++i) id = id << 8 | static_cast<uint8_t>(key[i]);
  return id;
}

std::string EncodeEntry(const DiskIndexEntry& e) {
  return Writer()
      .Put(kIndexVersion)
      .Put(e.region)
      .Put(e.generation)
      .Put(e.offset)
      .Put(e.record_bytes)
      .Put(e.fp_id)
      .Put(e.num_tokens)
      .Put(e.base_position)
      .Put(e.codec)
      .Put(e.payload_bytes)
      .Put(e.payload_checksum)
      .str();
}

bool DecodeEntry(rocksdb::Slice key, rocksdb::Slice value, DiskIndexEntry* e) {
  if (key.size() != 1 + 4 + 16) return false;
  e->ns_id = IdOf(key);
  auto k = ChunkKey::FromBytes(std::string_view(key.data() + 5, 16));
  if (!k.ok()) return false;
  e->key = *k;
  Reader r(value);
  uint8_t version = 0;
  return r.Get(&version) && version == kIndexVersion && r.Get(&e->region) && r.Get(&e->generation) &&
         r.Get(&e->offset) && r.Get(&e->record_bytes) && r.Get(&e->fp_id) && r.Get(&e->num_tokens) &&
         r.Get(&e->base_position) && r.Get(&e->codec) && r.Get(&e->payload_bytes) && r.Get(&e->payload_checksum) &&
         r.done();
}

std::string EncodeFingerprint(const ModelFingerprint& fp) {
  return Writer()
      .Put(kFingerprintVersion)
      .Put(static_cast<uint32_t>(fp.model_id.size()))
      .Bytes(fp.model_id.data(), fp.model_id.size())
      .Put(fp.num_layers)
      .Put(fp.num_kv_heads)
      .Put(fp.head_dim)
      .Put(static_cast<uint8_t>(fp.dtype))
      .Put(fp.rope_theta)
      .Put(static_cast<uint8_t>(fp.rope_style))
      .Put(fp.rotary_dim)
      .Put(static_cast<uint8_t>(fp.keys_post_rope))
      .Put(fp.chunk_tokens)
      .str();
}

bool DecodeFingerprint(rocksdb::Slice value, ModelFingerprint* fp) {
  Reader r(value);
  uint8_t version = 0, dtype = 0, style = 0, post = 0;
  uint32_t len = 0;
  const bool ok = r.Get(&version) && version == kFingerprintVersion && r.Get(&len) && len <= 256 &&
                  r.Bytes(&fp->model_id, len) && r.Get(&fp->num_layers) && r.Get(&fp->num_kv_heads) &&
                  r.Get(&fp->head_dim) && r.Get(&dtype) && r.Get(&fp->rope_theta) && r.Get(&style) &&
                  r.Get(&fp->rotary_dim) && r.Get(&post) && r.Get(&fp->chunk_tokens) && r.done();
  fp->dtype = static_cast<DType>(dtype);
  fp->rope_style = static_cast<RopeStyle>(style);
  fp->keys_post_rope = post != 0;
  return ok && fp->Validate().ok();
}

bool DecodeProfile(rocksdb::Slice key, rocksdb::Slice value, MetaStore::ProfileRecord* p) {
  if (key.size() != 1 + 4 + 8) return false;
  p->ns_id = IdOf(key);
  p->id = 0;
  for (int i = 5; i < 13; ++i) p->id = p->id << 8 | static_cast<uint8_t>(key[i]);
  Reader r(value);
  uint8_t version = 0;
  uint32_t name_len = 0;
  if (!(r.Get(&version) && version == kProfileVersion && r.Get(&p->sequence) && r.Get(&name_len) && name_len <= 128 &&
        r.Bytes(&p->name, name_len))) {
    return false;
  }
  const size_t rest = value.size() - (1 + 8 + 4 + name_len);
  return r.Bytes(&p->bytes, rest) && r.done();
}

// DISK_FORMAT.md, "Variant record": the fields, then XXH3-64 of every byte before it.
std::string EncodeVariant(uint32_t fp_id, uint64_t put_seq, const VariantMeta& m) {
  Writer w;
  w.Put(kVariantVersion).Put(fp_id).Put(put_seq).Key(m.content_key).Put(m.context_impact);
  w.Put(static_cast<uint32_t>(m.context.size()));
  for (const ChunkKey& k : m.context) w.Key(k);
  w.Floats(m.context_attention).Floats(m.layer_context_impact).Floats(m.token_context_attention);
  const uint64_t crc = Checksum64(AsBytes(w.view()));
  return w.Put(crc).str();
}

bool DecodeVariantFields(Reader& r, DiskVariantRecord* out) {
  VariantMeta& m = out->meta;
  uint8_t version = 0;
  uint32_t contexts = 0;
  if (!(r.Get(&version) && version == kVariantVersion && r.Get(&out->fp_id) && r.Get(&out->put_seq) &&
        r.Key(&m.content_key) && r.Get(&m.context_impact) && r.Get(&contexts) &&
        contexts <= VariantMeta::kMaxContext)) {
    return false;
  }
  m.context.resize(contexts);
  for (ChunkKey& k : m.context) {
    if (!r.Key(&k)) return false;
  }
  return r.Floats(&m.context_attention, VariantMeta::kMaxContext) &&
         r.Floats(&m.layer_context_impact, kMaxVariantFloats) && r.Floats(&m.token_context_attention, kMaxVariantFloats);
}

bool DecodeVariant(rocksdb::Slice key, rocksdb::Slice value, DiskVariantRecord* out) {
  if (key.size() != 1 + 4 + 16 || value.size() < 1 + sizeof(uint64_t)) return false;
  out->ns_id = IdOf(key);
  auto k = ChunkKey::FromBytes(std::string_view(key.data() + 5, 16));
  if (!k.ok()) return false;
  out->variant_key = *k;
  const size_t body = value.size() - sizeof(uint64_t);
  uint64_t crc = 0;
  std::memcpy(&crc, value.data() + body, sizeof(crc));
  if (crc != Checksum64(AsBytes(std::string_view(value.data(), body)))) return false;
  Reader r(rocksdb::Slice(value.data(), body));
  return DecodeVariantFields(r, out) && r.done();
}

Status FromRocks(const rocksdb::Status& s, const char* what) {
  if (s.ok()) return Status::Ok();
  if (s.IsNoSpace()) return ResourceExhausted(std::string(what) + ": " + s.ToString());
  return Internal(std::string(what) + ": " + s.ToString());
}

rocksdb::WriteOptions NoSync() {
  rocksdb::WriteOptions w;
  w.sync = false;  // the WAL reaches the OS page cache: enough to survive a killed process
  return w;
}

}  // namespace

MetaStore::MetaStore(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}
MetaStore::~MetaStore() = default;

Result<std::unique_ptr<MetaStore>> MetaStore::Open(const std::string& dir) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.max_open_files = 256;
  options.keep_log_file_num = 4;
  options.IncreaseParallelism(2);
  rocksdb::DB* raw = nullptr;
  const rocksdb::Status s = rocksdb::DB::Open(options, dir, &raw);
  if (!s.ok()) return FromRocks(s, ("open index " + dir).c_str());
  return std::unique_ptr<MetaStore>(new MetaStore(std::unique_ptr<rocksdb::DB>(raw)));
}

Status MetaStore::PutNamespace(uint32_t id, const std::string& name) {
  return FromRocks(db_->Put(NoSync(), IdKey('n', id), name), "index put namespace");
}

Status MetaStore::PutFingerprint(uint32_t id, const ModelFingerprint& fp) {
  return FromRocks(db_->Put(NoSync(), IdKey('f', id), EncodeFingerprint(fp)), "index put fingerprint");
}

Status MetaStore::PutRegionGeneration(uint32_t region, uint64_t generation) {
  return FromRocks(db_->Put(NoSync(), IdKey('r', region), Writer().Put(generation).str()), "index put region");
}

Status MetaStore::PutChunks(std::span<const DiskIndexEntry> entries) {
  rocksdb::WriteBatch batch;
  for (const DiskIndexEntry& e : entries) batch.Put(ChunkIndexKey(e.ns_id, e.key), EncodeEntry(e));
  return FromRocks(db_->Write(NoSync(), &batch), "index put chunks");
}

Status MetaStore::DeleteChunks(std::span<const std::pair<uint32_t, ChunkKey>> keys) {
  rocksdb::WriteBatch batch;
  for (const auto& [ns, key] : keys) batch.Delete(ChunkIndexKey(ns, key));
  return FromRocks(db_->Write(NoSync(), &batch), "index delete chunks");
}

Status MetaStore::PutProfile(uint32_t ns_id, uint64_t id, const std::string& name, uint64_t sequence,
                             std::span<const std::byte> bytes) {
  const std::string value = Writer()
                                .Put(kProfileVersion)
                                .Put(sequence)
                                .Put(static_cast<uint32_t>(name.size()))
                                .Bytes(name.data(), name.size())
                                .Bytes(bytes.data(), bytes.size())
                                .str();
  return FromRocks(db_->Put(NoSync(), ProfileKey(ns_id, id), value), "index put profile");
}

Status MetaStore::PutVariant(uint32_t ns_id, const ChunkKey& variant_key, uint32_t fp_id, uint64_t put_seq,
                             const VariantMeta& meta) {
  return FromRocks(db_->Put(NoSync(), VariantRecordKey(ns_id, variant_key), EncodeVariant(fp_id, put_seq, meta)),
                   "index put variant");
}

Status MetaStore::DeleteVariants(uint32_t ns_id, std::span<const ChunkKey> variant_keys) {
  rocksdb::WriteBatch batch;
  for (const ChunkKey& key : variant_keys) batch.Delete(VariantRecordKey(ns_id, key));
  return FromRocks(db_->Write(NoSync(), &batch), "index delete variants");
}

Status MetaStore::CorruptVariantForTest(uint32_t ns_id, const ChunkKey& variant_key, size_t offset) {
  std::string value;
  const rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), VariantRecordKey(ns_id, variant_key), &value);
  if (s.IsNotFound() || offset >= value.size()) return NotFound("no such variant record byte");
  KVTIER_RETURN_IF_ERROR(FromRocks(s, "index get variant"));
  value[offset] = static_cast<char>(~value[offset]);
  return FromRocks(db_->Put(NoSync(), VariantRecordKey(ns_id, variant_key), value), "index put variant");
}

Result<MetaStore::Snapshot> MetaStore::Load() {
  Snapshot snap;
  rocksdb::WriteBatch garbage;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const rocksdb::Slice k = it->key();
    const rocksdb::Slice v = it->value();
    bool ok = k.size() >= 5;
    if (ok && k[0] == 'n' && k.size() == 5) {
      snap.namespaces[IdOf(k)] = v.ToString();
    } else if (ok && k[0] == 'f' && k.size() == 5) {
      ModelFingerprint fp;
      ok = DecodeFingerprint(v, &fp);
      if (ok) snap.fingerprints[IdOf(k)] = fp;
    } else if (ok && k[0] == 'r' && k.size() == 5) {
      uint64_t gen = 0;
      Reader r(v);
      ok = r.Get(&gen) && r.done();
      if (ok) snap.region_generations[IdOf(k)] = gen;
    } else if (ok && k[0] == 'p') {
      ProfileRecord p;
      ok = DecodeProfile(k, v, &p);
      if (ok) snap.profiles.push_back(std::move(p));
    } else if (ok && k[0] == 'c') {
      DiskIndexEntry e;
      ok = DecodeEntry(k, v, &e);
      if (ok) snap.chunks.push_back(e);
    } else if (ok && k[0] == 'v') {
      DiskVariantRecord r;
      ok = DecodeVariant(k, v, &r);
      if (ok) snap.variants.push_back(std::move(r));
      else ++snap.variants_unreadable;
    } else {
      ok = false;
    }
    if (!ok) {
      ++snap.unreadable;
      garbage.Delete(k);
    }
  }
  KVTIER_RETURN_IF_ERROR(FromRocks(it->status(), "index scan"));
  if (garbage.Count() > 0) KVTIER_RETURN_IF_ERROR(FromRocks(db_->Write(NoSync(), &garbage), "index cleanup"));
  return snap;
}

}  // namespace kvtier
