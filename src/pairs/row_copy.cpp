#include "pairs/row_copy.h"

#include "mmu/error.h"

namespace mmu::pairs {

namespace {

// Calls fn(first row, row count, offset into the rows) for each run of
// consecutive rows. Each run is read or written as one hyperslab: HDF5 maps a
// single block to its chunks at once, where a union of blocks is mapped
// element by element (measured: three quarters of the time on 400 KB rows).
template <typename Fn>
void for_each_run(const std::vector<hsize_t>& rows, Fn&& fn) {
  for (size_t i = 0; i < rows.size();) {
    size_t j = i + 1;
    while (j < rows.size() && rows[j] == rows[j - 1] + 1) ++j;
    fn(rows[i], j - i, i);
    i = j;
  }
}

// Selects rows [first, first + count) of a dataset whose rows are row_dims.
void select_run(hid_t space, hsize_t first, hsize_t count, const std::vector<hsize_t>& row_dims) {
  std::vector<hsize_t> start(row_dims.size() + 1, 0), size(row_dims.size() + 1);
  start[0] = first;
  size[0] = count;
  for (size_t k = 0; k < row_dims.size(); ++k) size[k + 1] = row_dims[k];
  H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), nullptr, size.data(), nullptr);
}

h5::Handle memory_space(size_t n, const std::vector<hsize_t>& row_dims) {
  std::vector<hsize_t> dims{static_cast<hsize_t>(n)};
  dims.insert(dims.end(), row_dims.begin(), row_dims.end());
  return h5::Handle(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
}

}  // namespace

std::vector<RowDataset> row_datasets(hid_t file, const std::string& path, int64_t rows,
                                     std::vector<std::string>* skipped) {
  std::vector<RowDataset> out;
  for (const std::string& name : h5::list_datasets(file)) {
    if (name.find('/') != std::string::npos) continue;  // row tables keep their objects at the root
    const h5::Dataset info(file, path, name);           // validates the shape against the file
    const auto& dims = info.info().dims;
    if (dims.empty() || dims[0] != rows) continue;
    RowDataset d;
    d.name = name;
    d.dataset = h5::Handle(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!d.dataset.valid()) throw FormatError("cannot open dataset '" + name + "' in '" + path + "': " + h5::last_error());
    d.type = h5::Handle(H5Dget_type(d.dataset.get()), H5Tclose);
    if (H5Tdetect_class(d.type.get(), H5T_VLEN) > 0 || H5Tis_variable_str(d.type.get()) > 0) {
      if (skipped) skipped->push_back(name);
      continue;
    }
    d.row_bytes = H5Tget_size(d.type.get());
    for (size_t k = 1; k < dims.size(); ++k) {
      d.row_dims.push_back(static_cast<hsize_t>(dims[k]));
      d.row_bytes *= static_cast<size_t>(dims[k]);
    }
    out.push_back(std::move(d));
  }
  return out;
}

void read_rows(const RowDataset& d, const std::string& path, const std::vector<hsize_t>& rows, char* out) {
  if (rows.empty()) return;
  h5::Handle space(H5Dget_space(d.dataset.get()), H5Sclose);
  for_each_run(rows, [&](hsize_t first, hsize_t count, size_t at) {
    select_run(space.get(), first, count, d.row_dims);
    const h5::Handle mem = memory_space(count, d.row_dims);
    if (H5Dread(d.dataset.get(), d.type.get(), mem.get(), space.get(), H5P_DEFAULT, out + at * d.row_bytes) < 0)
      throw FormatError("cannot read rows " + std::to_string(first) + " to " + std::to_string(first + count - 1) +
                        " of dataset '" + d.name + "' in '" + path + "': " + h5::last_error());
  });
}

}  // namespace mmu::pairs
