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

bool is_healpix_dir(const std::string& name) { return name.rfind("healpix=", 0) == 0; }

// "healpix=0714" -> 714; nullopt when the rest is not a cell of nside 16.
std::optional<int64_t> parse_healpix_dir(const std::string& name) {
  const std::string prefix = "healpix=";
  if (!is_healpix_dir(name) || name.size() == prefix.size()) return std::nullopt;
  int64_t v = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || v >= kNumCells) return std::nullopt;
    v = v * 10 + (name[i] - '0');
  }
  if (v >= kNumCells) return std::nullopt;
  return v;
}

// Why a file found under the roots cannot be read as an MMU file ("" when it can).
std::string unusable_reason(const fs::path& file) {
  const std::string folder = file.parent_path().filename().string();
  if (is_healpix_dir(folder) && !parse_healpix_dir(folder))
    return "'" + file.string() + "' is in folder '" + folder + "', which is not an nside-16 HEALPix cell (0.." +
           std::to_string(kNumCells - 1) + "); its survey and cell cannot be known";
  return "";
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

std::vector<SourceFile> discover_files(const std::vector<std::string>& roots, std::vector<UnusableInput>* unusable) {
  std::vector<SourceFile> out;
  std::vector<UnusableInput> bad;
  const auto take = [&](const fs::path& p) {
    const std::string why = unusable_reason(p);
    if (why.empty())
      out.push_back(describe(p));
    else
      bad.push_back({p.string(), why});
  };
  for (const std::string& r : roots) {
    fs::path root(r);
    std::error_code ec;
    if (!fs::exists(root, ec)) throw NotFound("input '" + r + "' does not exist");
    if (fs::is_regular_file(root, ec)) {
      take(root);
      continue;
    }
    fs::recursive_directory_iterator it(root, fs::directory_options::follow_directory_symlink, ec), end;
    if (ec) throw IoError(r, "list", ec.value());
    for (; it != end; it.increment(ec)) {
      if (ec) throw IoError(it->path().string(), "list", ec.value());
      if (!is_mmu_file(it->path())) continue;
      const std::string p = it->path().string();
      if (it->is_regular_file(ec))
        take(it->path());
      else if (it->is_symlink(ec) && !fs::exists(it->path(), ec))
        bad.push_back({p, "'" + p + "' is a link to '" + fs::read_symlink(it->path(), ec).string() + "', which does not exist"});
      else if (it->is_directory(ec))
        bad.push_back({p, "'" + p + "' is a folder, not an HDF5 file (its contents are read)"});
      else
        bad.push_back({p, "'" + p + "' is not a regular file"});
    }
  }
  if (!unusable && !bad.empty()) throw FormatError(bad.front().why);
  if (unusable) unusable->insert(unusable->end(), bad.begin(), bad.end());
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
