#include "mmu/mmu_files.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <tuple>

#include "mmu/error.h"
#include "mmu/sky.h"

namespace fs = std::filesystem;

namespace mmu {

namespace {

bool is_mmu_file(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".hdf5" || ext == ".h5";
}

// "healpix=0714" -> 714; nullopt for anything else.
std::optional<int64_t> parse_healpix_dir(const std::string& name) {
  const std::string prefix = "healpix=";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return std::nullopt;
  int64_t v = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || v > kNumCells) return std::nullopt;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

SourceFile describe(const fs::path& file) {
  SourceFile f;
  f.path = file.string();
  struct stat st;
  if (::stat(f.path.c_str(), &st) != 0) throw IoError(f.path, "stat", errno);
  f.size = st.st_size;
  f.mtime = st.st_mtime;
  // Walk up from the file: healpix=N, then subset, then dataset.
  fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  if (auto hp = parse_healpix_dir(dir.filename().string())) {
    f.healpix = *hp;
    dir = dir.parent_path();
  }
  // Names come from the path itself, so pointing at any level of the tree
  // (the root, a dataset, a subset, one file) gives the same survey names.
  const fs::path abs = fs::absolute(dir).lexically_normal();
  if (f.healpix >= 0) {
    f.subset = abs.filename().string();
    f.dataset = abs.parent_path().filename().string();
    if (f.dataset.empty()) f.dataset = f.subset;
  } else {
    f.dataset = abs.filename().string();
  }
  if (f.dataset.empty()) f.dataset = file.stem().string();
  return f;
}

}  // namespace

std::vector<SourceFile> discover_files(const std::vector<std::string>& roots) {
  std::vector<SourceFile> out;
  for (const std::string& r : roots) {
    fs::path root(r);
    std::error_code ec;
    if (!fs::exists(root, ec)) throw NotFound("input '" + r + "' does not exist");
    if (fs::is_regular_file(root, ec)) {
      out.push_back(describe(root));
      continue;
    }
    fs::recursive_directory_iterator it(root, fs::directory_options::follow_directory_symlink, ec), end;
    if (ec) throw IoError(r, "list", ec.value());
    for (; it != end; it.increment(ec)) {
      if (ec) throw IoError(it->path().string(), "list", ec.value());
      if (it->is_regular_file(ec) && is_mmu_file(it->path())) out.push_back(describe(it->path()));
    }
  }
  std::sort(out.begin(), out.end(), [](const SourceFile& a, const SourceFile& b) {
    return std::tie(a.dataset, a.subset, a.healpix, a.path) < std::tie(b.dataset, b.subset, b.healpix, b.path);
  });
  out.erase(std::unique(out.begin(), out.end(),
                        [](const SourceFile& a, const SourceFile& b) {
                          return fs::weakly_canonical(a.path) == fs::weakly_canonical(b.path);
                        }),
            out.end());
  return out;
}

}  // namespace mmu
