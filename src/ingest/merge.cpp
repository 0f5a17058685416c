#include "mmu/merge.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "mmu/error.h"
#include "mmu/index_record.h"
#include "mmu/space_index.h"
#include "mmu/store.h"
#include "store/layout.h"
#include "store/sqlite_util.h"

namespace fs = std::filesystem;

namespace mmu {

namespace {

constexpr int64_t kChunkVectors = 16384;  // vectors read and written at a time

struct Shard {
  std::string path;
  std::unique_ptr<Store> store;
  // Old row -> new row: (old_first, new_first, n) per file, by old_first.
  std::vector<std::array<int64_t, 3>> spans;
  int64_t map(int64_t old_row) const {
    auto it = std::upper_bound(spans.begin(), spans.end(), old_row,
                               [](int64_t r, const std::array<int64_t, 3>& s) { return r < s[0]; });
    if (it == spans.begin()) return -1;
    --it;
    return old_row < (*it)[0] + (*it)[2] ? (*it)[1] + (old_row - (*it)[0]) : -1;
  }
};

std::string canonical(const std::string& p) { return fs::weakly_canonical(fs::absolute(p)).string(); }

std::vector<Shard> open_shards(const MergeOptions& opt) {
  if (opt.shards.empty()) throw InvalidArgument("merge needs at least one shard store");
  std::map<std::string, std::string> seen;
  const std::string target = canonical(opt.store);
  std::vector<Shard> shards;
  for (const std::string& path : opt.shards) {
    const std::string c = canonical(path);
    if (c == target) throw InvalidArgument("shard '" + path + "' is the merged store --store '" + opt.store + "' itself");
    if (!seen.emplace(c, path).second)
      throw InvalidArgument("shard '" + path + "' is given twice ('" + seen[c] + "'): its objects would overlap");
    Shard s;
    s.path = path;
    try {
      s.store = Store::open(path);
    } catch (const Error& e) {
      throw Error(e.kind(), "shard '" + path + "': " + e.what());
    }
    shards.push_back(std::move(s));
  }
  return shards;
}

// Spaces of one name must be the same space: same fit or model (SHA-256),
// model name, version and dimension. Returns them in first-seen order.
std::vector<SpaceInfo> check_spaces(const std::vector<Shard>& shards) {
  std::vector<SpaceInfo> spaces;
  std::map<std::string, size_t> first;  // space -> shard that has it first
  for (size_t i = 0; i < shards.size(); ++i)
    for (const SpaceInfo& s : shards[i].store->spaces()) {
      auto it = first.find(s.name);
      if (it == first.end()) {
        first.emplace(s.name, i);
        spaces.push_back(s);
        continue;
      }
      const SpaceInfo& a = *std::find_if(spaces.begin(), spaces.end(), [&](const SpaceInfo& x) { return x.name == s.name; });
      if (a.sha256 != s.sha256 || a.model != s.model || a.version != s.version || a.dim != s.dim ||
          a.modality != s.modality)
        throw InvalidArgument("space '" + s.name + "' differs between shards '" + shards[it->second].path + "' (" +
                              a.model + " " + a.version + ", dim " + std::to_string(a.dim) + ", SHA-256 " + a.sha256 +
                              ") and '" + shards[i].path + "' (" + s.model + " " + s.version + ", dim " +
                              std::to_string(s.dim) + ", SHA-256 " + s.sha256 +
                              "): their vectors were made by different fits or models; build every shard with the "
                              "same --fit FITDIR and --model packages");
    }
  return spaces;
}

// No file and no (survey, object id) in two shards. Ids are kept as 64-bit
// hashes (about 16 bytes an object with the table); a hash met twice is
// looked up in the catalogs of the earlier shards.
void check_overlap(const std::vector<Shard>& shards) {
  std::map<std::string, size_t> file_shard;
  for (size_t i = 0; i < shards.size(); ++i)
    for (const StoredFile& f : shards[i].store->files()) {
      auto [it, fresh] = file_shard.emplace(f.file.path, i);
      if (!fresh)
        throw InvalidArgument("file '" + f.file.path + "' is in shards '" + shards[it->second].path + "' and '" +
                              shards[i].path + "': the shards overlap");
    }
  std::unordered_set<uint64_t> id_shard;
  const std::hash<std::string> hash;
  for (size_t i = 0; i < shards.size(); ++i) {
    sql::Db db(layout::catalog_file(shards[i].store->generation_path()), SQLITE_OPEN_READONLY);
    auto s = db.prepare("SELECT survey, object_id FROM objects");
    while (s.step()) {
      const std::string survey = s.text(0), id = s.text(1);
      const uint64_t h = hash(survey + '\n' + id);
      if (id_shard.insert(h).second) continue;
      // Met before (or a hash collision): look in every earlier shard.
      for (size_t j = 0; j < i; ++j) {
        const auto rows = shards[j].store->find_by_id(id);
        if (std::any_of(rows.begin(), rows.end(), [&](const CatalogRow& r) { return r.survey == survey; }))
          throw InvalidArgument("object '" + id + "' of survey '" + survey + "' is in shards '" + shards[j].path +
                                "' and '" + shards[i].path + "': the shards overlap");
      }
    }
  }
}

// The space's vectors, shard after shard, read from each vectors.f32 a chunk at a time.
class SpaceReader {
 public:
  SpaceReader(const std::vector<Shard>& shards, const SpaceInfo& info) : shards_(shards), info_(info) {}
  bool next(std::vector<int64_t>* rows, std::vector<float>* vectors) {
    while (true) {
      if (!file_) {
        if (shard_ >= shards_.size()) return false;
        if (!open_next()) continue;
      }
      const int64_t n = std::min<int64_t>(kChunkVectors, static_cast<int64_t>(vrows_.size()) - at_);
      if (n == 0) {
        file_.reset();
        continue;
      }
      vectors->resize(static_cast<size_t>(n * info_.dim));
      if (std::fread(vectors->data(), sizeof(float), vectors->size(), file_.get()) != vectors->size())
        throw FormatError("'" + path_ + "' is shorter than its " + std::to_string(vrows_.size()) + " vectors");
      rows->resize(static_cast<size_t>(n));
      for (int64_t k = 0; k < n; ++k) {
        const int64_t old_row = vrows_[static_cast<size_t>(at_ + k)].second;
        (*rows)[static_cast<size_t>(k)] = shards_[shard_ - 1].map(old_row);
        if ((*rows)[static_cast<size_t>(k)] < 0)
          throw FormatError("shard '" + shards_[shard_ - 1].path + "' is damaged: space '" + info_.name +
                            "' has a vector of catalog row " + std::to_string(old_row) + ", which no file holds");
      }
      at_ += n;
      return true;
    }
  }

 private:
  bool open_next() {
    const Shard& s = shards_[shard_++];
    const auto spaces = s.store->spaces();
    if (std::none_of(spaces.begin(), spaces.end(), [&](const SpaceInfo& x) { return x.name == info_.name; }))
      return false;
    s.store->verify_space_files(info_.name);  // a damaged shard is refused by name
    vrows_ = s.store->space_rows(info_.name);
    at_ = 0;
    path_ = layout::vectors_file(s.store->space_dir(info_.name));
    file_.reset(std::fopen(path_.c_str(), "rb"));
    if (!file_) throw IoError(path_, "open", errno);
    return true;
  }
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  const std::vector<Shard>& shards_;
  const SpaceInfo& info_;
  size_t shard_ = 0;
  std::vector<std::pair<int64_t, int64_t>> vrows_;  // (vrow, row) of the open shard, in vrow order
  int64_t at_ = 0;
  std::string path_;
  std::unique_ptr<std::FILE, Closer> file_;
};

// A default space chosen in the shards (`mmu-index default-space`) stays
// chosen in the merged store; shards that chose differently are named and
// the merged store falls back to the rule, as a build does.
void keep_chosen_defaults(const std::vector<Shard>& shards, const std::vector<SpaceInfo>& spaces, StoreWriter& writer,
                          MergeReport& report) {
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> chosen;  // modality -> (space, shard)
  for (const SpaceInfo& info : spaces) chosen.emplace(info.modality, std::vector<std::pair<std::string, std::string>>{});
  for (auto& [modality, picks] : chosen)
    for (const Shard& s : shards)
      if (s.store->default_space_chosen(modality)) picks.emplace_back(s.store->default_space(modality), s.path);
  for (const auto& [modality, picks] : chosen) {
    if (picks.empty()) continue;
    const bool agree = std::all_of(picks.begin(), picks.end(), [&](const auto& p) { return p.first == picks[0].first; });
    if (agree) {
      writer.set_default_space(modality, picks[0].first, true);
      continue;
    }
    std::string which;
    for (const auto& [space, shard] : picks) which += (which.empty() ? "" : ", ") + space + " (shard '" + shard + "')";
    report.notes.push_back("the shards chose different default " + modality + " spaces: " + which +
                           "; the merged store uses the rule's; choose one with `mmu-index default-space`");
  }
}

// After the commit, the sq8 copy by the build's rule; a failure is a note (the space is searched exactly).
void add_sq8_copies(const MergeOptions& opt, MergeReport& report) {
  IndexSpec sq8;
  sq8.kind = IndexKind::kSq8;
  std::vector<std::pair<std::string, IndexSpec>> due;
  for (const auto& [name, count] : report.space_counts)
    if (gets_sq8_copy(count, opt.sq8_from_rows)) due.emplace_back(name, sq8);
  const ReindexOutcome done = reindex_committed(opt.store, due);
  report.reindexed.insert(report.reindexed.end(), done.built.begin(), done.built.end());
  for (const auto& [name, error] : done.failed)
    report.notes.push_back("space " + name + " was NOT given its sq8 copy; it is searched exactly until " +
                           "`mmu-index reindex --index sq8` (" + error + ")");
}

}  // namespace

MergeReport merge_stores(const MergeOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  MergeReport report;
  auto lock = std::make_unique<StoreLock>(opt.store, opt.wait_for_lock);
  std::vector<Shard> shards = open_shards(opt);
  const std::vector<SpaceInfo> spaces = check_spaces(shards);
  check_overlap(shards);

  auto writer_held = std::make_unique<StoreWriter>(opt.store, std::move(lock));
  StoreWriter& writer = *writer_held;
  nlohmann::json provenance = nlohmann::json::array();
  for (Shard& s : shards) {
    for (const StoredFile& f : s.store->files()) {
      const int64_t first = writer.copy_file(*s.store, f);
      s.spans.push_back({f.first_row, first, f.n_objects});
      report.objects += f.n_objects;
      ++report.files;
    }
    std::sort(s.spans.begin(), s.spans.end());
    provenance.push_back({{"store", canonical(s.path)},
                          {"generation", fs::path(s.store->generation_path()).filename().string()},
                          {"objects", s.store->num_objects()}});
  }
  for (const SpaceInfo& info : spaces) {
    SpaceReader reader(shards, info);
    const std::string fit_blob = [&] {
      for (const Shard& s : shards)
        for (const SpaceInfo& x : s.store->spaces())
          if (x.name == info.name) return s.store->read_fit(info.name);
      return std::string();
    }();
    writer.add_space_streamed(info, fit_blob, [&](std::vector<int64_t>* rows, std::vector<float>* vectors) {
      return reader.next(rows, vectors);
    });
    std::vector<std::pair<const Shard*, IndexSpec>> indexed;  // the shards whose space had an index
    for (const Shard& s : shards)
      for (const SpaceInfo& x : s.store->spaces())
        if (x.name == info.name) {
          report.space_counts[info.name] += x.count;
          const IndexRecord r = read_index_record(s.store->space_dir(info.name));
          if (r.spec.kind != IndexKind::kFlat) indexed.emplace_back(&s, r.spec);
        }
    // A space large enough for the sq8 copy gets it after the commit (add_sq8_copies).
    if (!gets_sq8_copy(report.space_counts[info.name], opt.sq8_from_rows))
      for (const auto& [s, spec] : indexed)
        report.notes.push_back("space " + info.name + " of shard '" + s->path + "' had " + describe_index(spec) +
                               "; the merged space is searched exactly until `mmu-index reindex`");
  }
  for (const Shard& s : shards) writer.copy_links(*s.store, [&](int64_t row) { return s.map(row); });
  keep_chosen_defaults(shards, spaces, writer, report);
  writer.set_meta("merged_from", provenance.dump());
  writer.commit();
  writer_held.reset();  // releases the store's lock for the reindexing that follows
  add_sq8_copies(opt, report);
  report.shards = static_cast<int64_t>(shards.size());
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

void print_merge_report(const MergeReport& r, const std::string& store, std::ostream& out) {
  out << "store " << store << ": " << r.objects << " objects from " << r.files << " files of " << r.shards
      << " shards in " << static_cast<int64_t>(r.seconds * 1000) / 1000.0 << " s\n";
  for (const auto& [name, count] : r.space_counts) out << "  space " << name << ": " << count << " vectors\n";
  for (const auto& note : r.notes) out << "  " << note << "\n";
  for (const auto& line : r.reindexed) out << "  reindexed " << line << "\n";
}

}  // namespace mmu
