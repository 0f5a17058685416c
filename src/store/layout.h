// The store's file layout: every file and folder name of a store, and the
// paths built from them. The one place that knows where things lie:
//   <store>/CURRENT, LOCK, resume/, gen-N/ (gen-N.tmp/ while being written,
//                                            gen-N.old/ while being deleted)
//   <store>/gen-N/catalog.sqlite, READERS, spaces/<name>/
//   <store>/gen-N/spaces/<name>/vectors.f32, index.faiss, fit.bin, index.json,
//                               vectors.f16, vectors.sq8, ann-<kind>-<stamp>.faiss
// Names only, no store code: vector/ (below store/) includes it too.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace mmu::layout {

// In the store folder.
inline constexpr const char* kCurrentFile = "CURRENT";  // names the live generation
inline constexpr const char* kLockFile = "LOCK";        // held by whoever writes
inline constexpr const char* kResumeDir = "resume";     // model embeddings of an interrupted build
inline constexpr const char* kGenerationPrefix = "gen-";
inline constexpr const char* kUnfinishedSuffix = ".tmp";  // a generation not yet committed
inline constexpr const char* kRemovedSuffix = ".old";     // a generation being deleted, no reader on it

// In a generation folder.
inline constexpr const char* kCatalogFile = "catalog.sqlite";
inline constexpr const char* kReadersFile = "READERS";  // shared-locked by every reader of the generation
inline constexpr const char* kSpacesDir = "spaces";

// In a space folder.
inline constexpr const char* kVectorsFile = "vectors.f32";
inline constexpr const char* kFlatIndexFile = "index.faiss";
inline constexpr const char* kFitFile = "fit.bin";
inline constexpr const char* kIndexRecordFile = "index.json";  // which index a search uses
inline constexpr const char* kHalfVectorsFile = "vectors.f16";
inline constexpr const char* kSq8VectorsFile = "vectors.sq8";  // index kind sq8 (vector/compressed_scan.h)
inline constexpr const char* kAnnPrefix = "ann-";

inline std::string join(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

inline std::string current_file(const std::string& store_dir) { return join(store_dir, kCurrentFile); }
inline std::string lock_file(const std::string& store_dir) { return join(store_dir, kLockFile); }
inline std::string resume_dir(const std::string& store_dir) { return join(store_dir, kResumeDir); }

// "gen-000042" for 42.
inline std::string generation_name(int64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s%06lld", kGenerationPrefix, static_cast<long long>(n));
  return buf;
}

inline bool has_generation_prefix(const std::string& name) { return name.rfind(kGenerationPrefix, 0) == 0; }

// Number N of a "gen-N" folder name, or -1.
inline int64_t generation_number(const std::string& name) {
  const size_t prefix = std::char_traits<char>::length(kGenerationPrefix);
  if (!has_generation_prefix(name) || name.size() <= prefix) return -1;
  int64_t v = 0;
  for (size_t i = prefix; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || v > (INT64_MAX - 9) / 10) return -1;  // not ours, or overflowing
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

// A generation folder left by a build that never committed.
inline bool is_unfinished_generation(const std::string& name) {
  const std::string suffix = kUnfinishedSuffix;
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
         has_generation_prefix(name);
}

// A generation folder renamed aside for deletion (never read again).
inline bool is_removed_generation(const std::string& name) {
  const std::string suffix = kRemovedSuffix;
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
         has_generation_prefix(name);
}

inline std::string generation_dir(const std::string& store_dir, const std::string& gen_name) {
  return join(store_dir, gen_name);
}
inline std::string unfinished_generation_dir(const std::string& store_dir, const std::string& gen_name) {
  return join(store_dir, gen_name + kUnfinishedSuffix);
}

inline std::string catalog_file(const std::string& gen_dir) { return join(gen_dir, kCatalogFile); }
inline std::string readers_file(const std::string& gen_dir) { return join(gen_dir, kReadersFile); }
inline std::string space_dir(const std::string& gen_dir, const std::string& space) {
  return (std::filesystem::path(gen_dir) / kSpacesDir / space).string();
}

inline std::string vectors_file(const std::string& space_dir) { return join(space_dir, kVectorsFile); }
inline std::string flat_index_file(const std::string& space_dir) { return join(space_dir, kFlatIndexFile); }
inline std::string fit_file(const std::string& space_dir) { return join(space_dir, kFitFile); }
inline std::string index_record_file(const std::string& space_dir) { return join(space_dir, kIndexRecordFile); }
// A file of the space folder named by its index record.
inline std::string space_file(const std::string& space_dir, const std::string& name) { return join(space_dir, name); }

// "ann-<kind>-<stamp>.faiss": a new name per build, so the live index record
// names an intact file until it switches to the new one.
inline std::string ann_file_name(const std::string& kind, const std::string& stamp) {
  return kAnnPrefix + kind + "-" + stamp + ".faiss";
}
inline bool is_ann_file_name(const std::string& name) { return name.rfind(kAnnPrefix, 0) == 0; }

}  // namespace mmu::layout
