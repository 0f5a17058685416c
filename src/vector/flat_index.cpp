#include "vector/flat_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_io.h>

#include <cstdio>
#include <memory>

#include "base/file_util.h"
#include "mmu/error.h"

namespace mmu {

void write_flat_index(const std::string& path, int64_t dim, int64_t n, const float* vectors, const int64_t* ids) {
  try {
    faiss::IndexFlatIP flat(static_cast<int>(dim));
    faiss::IndexIDMap2 index(&flat);
    index.add_with_ids(n, vectors, ids);
    const std::string tmp = path + ".tmp";
    faiss::write_index(&index, tmp.c_str());
    files::fsync_path(tmp);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) throw IoError(path, "rename into place", errno);
  } catch (const faiss::FaissException& e) {
    throw Error(ErrorKind::kIo, "cannot write index '" + path + "': " + e.what());
  }
}

std::vector<Hit> search_flat_index(const std::string& path, int64_t dim, const float* query, int64_t k) {
  std::unique_ptr<faiss::Index> index;
  try {
    index.reset(faiss::read_index(path.c_str()));
  } catch (const faiss::FaissException& e) {
    throw FormatError("cannot read index '" + path + "': " + e.what());
  }
  if (index->d != dim)
    throw FormatError("index '" + path + "' has dimension " + std::to_string(index->d) + ", the catalog says " +
                      std::to_string(dim));
  k = std::min<int64_t>(k, index->ntotal);
  std::vector<float> scores(k);
  std::vector<faiss::Index::idx_t> ids(k);
  if (k > 0) index->search(1, query, k, scores.data(), ids.data());
  std::vector<Hit> hits;
  for (int64_t i = 0; i < k; ++i)
    if (ids[i] >= 0) hits.push_back({ids[i], scores[i]});
  return hits;
}

}  // namespace mmu
