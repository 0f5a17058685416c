// A store for unit tests whose neighbour order is known (store_test, store_pinning_test).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "mmu/store.h"

namespace mmu::test {

// Writes a small store: n objects in one survey, vectors on a circle so the
// neighbour order is known (object i's nearest are i±1).
inline void write_circle_store(const std::string& dir, int64_t n, const std::string& survey = "desi") {
  mmu::StoreWriter w(dir);
  mmu::SourceFile f;
  f.path = dir + "/../fake.hdf5";
  f.dataset = survey;
  f.subset = "sv3";
  f.healpix = 1113;
  const int64_t fid = w.add_file(f, mmu::Modality::kSpectrum, n);
  std::vector<mmu::NewObject> objs;
  for (int64_t i = 0; i < n; ++i)
    objs.push_back({"id" + std::to_string(i), survey, "sv3", 30.0 + i * 0.01, 0.5, 1113, i, fid, i,
                    mmu::Modality::kSpectrum});
  const int64_t first = w.add_objects(objs);
  std::vector<int64_t> rows;
  std::vector<float> v;
  for (int64_t i = 0; i < n; ++i) {
    rows.push_back(first + i);
    v.push_back(std::cos(i * 0.1f));
    v.push_back(std::sin(i * 0.1f));
  }
  mmu::SpaceInfo info;
  info.name = "spectrum";
  info.modality = "spectrum";
  info.model = "test";
  info.version = "1";
  info.dim = 2;
  w.add_space(info, rows, v.data(), "fit");
  w.commit();
}

}  // namespace mmu::test
