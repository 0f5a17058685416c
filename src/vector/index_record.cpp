#include "mmu/index_record.h"

#include <nlohmann/json.hpp>

#include <filesystem>

#include "base/file_util.h"
#include "mmu/error.h"
#include "store/layout.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace mmu {

namespace {

json to_json(const IndexRecord& r) {
  return json{{"kind", index_kind_name(r.spec.kind)},
              {"nlist", r.spec.nlist},
              {"nprobe", r.spec.nprobe},
              {"M", r.spec.m},
              {"efConstruction", r.spec.ef_construction},
              {"efSearch", r.spec.ef_search},
              {"file", r.file},
              {"recall", r.recall},
              {"recall_k", r.recall_k},
              {"recall_queries", r.recall_queries},
              {"exact_ms", r.exact_ms},
              {"index_ms", r.index_ms},
              {"build_s", r.build_s},
              {"built", r.built}};
}

}  // namespace

const char* index_kind_name(IndexKind k) {
  switch (k) {
    case IndexKind::kFlat: return "flat";
    case IndexKind::kFlat16: return "flat16";
    case IndexKind::kIvf: return "ivf";
    case IndexKind::kHnsw: return "hnsw";
    case IndexKind::kSq8: return "sq8";
  }
  return "?";
}

IndexKind parse_index_kind(const std::string& s) {
  for (IndexKind k : {IndexKind::kFlat, IndexKind::kFlat16, IndexKind::kIvf, IndexKind::kHnsw, IndexKind::kSq8})
    if (s == index_kind_name(k)) return k;
  throw InvalidArgument("--index must be flat, flat16, ivf, hnsw or sq8, got '" + s + "'");
}

std::string describe_index(const IndexSpec& s) {
  switch (s.kind) {
    case IndexKind::kFlat: return "flat (exact, fp32)";
    case IndexKind::kFlat16: return "flat16 (exact over fp16 vectors)";
    case IndexKind::kSq8: return "sq8 (exact: 8-bit scan, candidates re-scored in fp32)";
    case IndexKind::kIvf: return "ivf nlist=" + std::to_string(s.nlist) + " nprobe=" + std::to_string(s.nprobe);
    case IndexKind::kHnsw:
      return "hnsw M=" + std::to_string(s.m) + " efConstruction=" + std::to_string(s.ef_construction) +
             " efSearch=" + std::to_string(s.ef_search);
  }
  return "?";
}

IndexRecord read_index_record(const std::string& space_dir) {
  const std::string path = layout::index_record_file(space_dir);
  IndexRecord r;
  std::error_code ec;
  if (!fs::exists(path, ec)) return r;
  try {
    const json j = json::parse(files::read_all(path));
    r.spec.kind = parse_index_kind(j.at("kind").get<std::string>());
    r.spec.nlist = j.at("nlist").get<int64_t>();
    r.spec.nprobe = j.at("nprobe").get<int64_t>();
    r.spec.m = j.at("M").get<int64_t>();
    r.spec.ef_construction = j.at("efConstruction").get<int64_t>();
    r.spec.ef_search = j.at("efSearch").get<int64_t>();
    r.file = j.at("file").get<std::string>();
    r.recall = j.at("recall").get<double>();
    r.recall_k = j.at("recall_k").get<int64_t>();
    r.recall_queries = j.at("recall_queries").get<int64_t>();
    r.exact_ms = j.at("exact_ms").get<double>();
    r.index_ms = j.at("index_ms").get<double>();
    r.build_s = j.at("build_s").get<double>();
    r.built = j.at("built").get<std::string>();
  } catch (const json::exception& e) {
    throw FormatError("'" + path + "' is damaged: " + e.what());
  } catch (const Error& e) {
    throw FormatError("'" + path + "' is damaged: " + e.what());
  }
  if (r.file.find('/') != std::string::npos || r.file == "..")
    throw FormatError("'" + path + "' is damaged: index file '" + r.file + "' is not in the space folder");
  return r;
}

std::string index_record_path(const std::string& space_dir) { return layout::index_record_file(space_dir); }

void write_index_record(const std::string& space_dir, const IndexRecord& r) {
  files::write_atomic(layout::index_record_file(space_dir), to_json(r).dump(2) + "\n");
}

}  // namespace mmu
