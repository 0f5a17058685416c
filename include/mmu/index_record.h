// How one embedding space is searched: exact over fp32 or fp16 vectors, or an
// approximate FAISS index (IVF-Flat, HNSW), as its index.json records. The
// space's vectors.f32 stays the source of truth, so any index can be rebuilt
// from it at any time (search/space_index.h builds them).
//
//   <space dir>/index.json        the choice, its parameters and measured recall
//   <space dir>/vectors.f16       for kind flat16
//   <space dir>/vectors.sq8       for kind sq8 (exact: an 8-bit scan with proven
//                                 bounds, candidates re-scored in fp32)
//   <space dir>/ann-<kind>.faiss  for ivf and hnsw (labels = vector rows)
#pragma once

#include <cstdint>
#include <string>

namespace mmu {

enum class IndexKind { kFlat, kFlat16, kIvf, kHnsw, kSq8 };

struct IndexSpec {
  IndexKind kind = IndexKind::kFlat;
  int64_t nlist = 0;    // IVF lists; 0 = 4 * sqrt(n), at most n / 39
  int64_t nprobe = 16;  // IVF lists scanned per query
  int64_t m = 32;       // HNSW links per node
  int64_t ef_construction = 80;
  int64_t ef_search = 64;  // HNSW candidate list per query
};

// What index.json records: the index and how well it did against exact search.
struct IndexRecord {
  IndexSpec spec;
  std::string file;           // relative to the space dir; "" for flat
  double recall = 1.0;        // mean recall@recall_k over recall_queries stored vectors
  int64_t recall_k = 0, recall_queries = 0;
  double exact_ms = 0;        // mean single-query exact scan time
  double index_ms = 0;        // mean single-query time with this index
  double build_s = 0;
  std::string built;          // ISO 8601 UTC
};

const char* index_kind_name(IndexKind k);
// "flat", "flat16", "ivf", "hnsw" or "sq8"; throws InvalidArgument naming --index otherwise.
IndexKind parse_index_kind(const std::string& s);
// "hnsw M=32 efConstruction=80 efSearch=64", for output.
std::string describe_index(const IndexSpec& s);

// The record of the space at space_dir; flat with recall 1 when it has none.
// Throws FormatError naming the file when index.json is damaged.
IndexRecord read_index_record(const std::string& space_dir);

// The record's file (index.json) of the space at space_dir.
std::string index_record_path(const std::string& space_dir);
// Writes the record as the space's index.json, atomically.
void write_index_record(const std::string& space_dir, const IndexRecord& r);

}  // namespace mmu
