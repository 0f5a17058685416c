#include "read/scalar_columns.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <utility>

namespace mmu {

namespace {

// Longer fixed-width strings are free text (descriptions, paths), not values one filters on.
constexpr size_t kMaxTextBytes = 64;

// The column type a dataset's values take; nullopt when it is no catalog value (compound, long strings).
std::optional<ScalarColumn::Type> scalar_type(const h5::DatasetInfo& info) {
  using T = ScalarColumn::Type;
  switch (info.type) {
    case h5::TypeClass::kBool:
    case h5::TypeClass::kInteger: return T::kInteger;
    // uint64 does not fit int64; a double keeps its magnitude.
    case h5::TypeClass::kUnsignedInteger: return info.type_size < 8 ? T::kInteger : T::kReal;
    case h5::TypeClass::kFloat: return T::kReal;
    case h5::TypeClass::kString:
      if (info.variable_string || info.type_size <= kMaxTextBytes) return T::kText;
      return std::nullopt;
    default: return std::nullopt;
  }
}

// Where some of a column's values come from: all rows of `dataset` land at file rows [row, row + rows()).
struct ColumnPart {
  int64_t row;
  h5::Dataset dataset;
};

// A column found in one or more datasets (one per MaNGA group), before reading.
struct FoundColumn {
  std::optional<ScalarColumn::Type> type;
  bool mixed = false;  // text in one place, numbers in another: no single comparison fits
  std::vector<ColumnPart> parts;

  void add(ColumnPart part, ScalarColumn::Type t) {
    using T = ScalarColumn::Type;
    if (!type) type = t;
    else if ((*type == T::kText) != (t == T::kText)) mixed = true;
    else if (*type != t) type = T::kReal;  // integers in one group, floats in another
    parts.push_back(std::move(part));
  }
};

ScalarColumn read_column(const std::string& name, const FoundColumn& found, int64_t rows) {
  using T = ScalarColumn::Type;
  ScalarColumn c;
  c.name = name;
  c.type = *found.type;
  c.present.assign(static_cast<size_t>(rows), 0);
  if (c.type == T::kInteger) c.integers.assign(static_cast<size_t>(rows), 0);
  if (c.type == T::kReal) c.reals.assign(static_cast<size_t>(rows), std::nan(""));
  if (c.type == T::kText) c.texts.assign(static_cast<size_t>(rows), std::string());
  for (const ColumnPart& part : found.parts) {
    const h5::Dataset& d = part.dataset;
    const int64_t n = d.rows();
    const size_t at = static_cast<size_t>(part.row);
    if (c.type == T::kText) {
      std::vector<std::string> t = d.read_text(0, n);
      std::move(t.begin(), t.end(), c.texts.begin() + at);
      std::fill_n(c.present.begin() + at, n, uint8_t{1});
    } else if (c.type == T::kInteger && d.info().type == h5::TypeClass::kBool) {
      std::vector<uint8_t> b(static_cast<size_t>(n));
      d.read_rows_bool(0, n, b.data());
      std::copy(b.begin(), b.end(), c.integers.begin() + at);
      std::fill_n(c.present.begin() + at, n, uint8_t{1});
    } else if (c.type == T::kInteger) {
      d.read_rows(0, n, c.integers.data() + at);
      std::fill_n(c.present.begin() + at, n, uint8_t{1});
    } else {
      d.read_rows(0, n, c.reals.data() + at);
      for (int64_t i = 0; i < n; ++i) c.present[at + i] = !std::isnan(c.reals[at + i]);
    }
  }
  return c;
}

}  // namespace

std::vector<ScalarColumn> read_file_scalar_columns(hid_t file, const std::string& file_path, FileLayout layout,
                                                   int64_t rows, const std::vector<std::string>& groups,
                                                   const std::set<std::string>& roles) {
  std::map<std::string, FoundColumn> found;  // sorted by name
  auto consider = [&](const std::string& name, const std::string& path, int64_t row, bool one_row) {
    if (roles.count(name)) return;
    h5::Dataset d(file, file_path, path);
    const auto& dims = d.info().dims;
    const bool scalar = dims.empty() || (one_row && dims.size() == 1 && dims[0] == 1);
    const bool column = !one_row && dims.size() == 1 && dims[0] == rows;
    const auto type = scalar_type(d.info());
    if (!type || !(scalar || column)) return;
    if (one_row) d.treat_as_one_row();
    found[name].add(ColumnPart{row, std::move(d)}, *type);
  };
  std::map<std::string, int64_t> group_row;
  for (size_t i = 0; i < groups.size(); ++i) group_row[groups[i]] = static_cast<int64_t>(i);
  for (const std::string& path : h5::list_datasets(file)) {
    const size_t slash = path.find('/');
    if (slash == std::string::npos) {
      if (groups.empty()) consider(path, path, 0, layout == FileLayout::kPerObjectScalars);
    } else if (path.find('/', slash + 1) == std::string::npos) {
      auto g = group_row.find(path.substr(0, slash));
      if (g != group_row.end()) consider(path.substr(slash + 1), path, g->second, true);
    }
  }
  std::vector<ScalarColumn> out;
  for (const auto& [name, f] : found)
    if (!f.mixed) out.push_back(read_column(name, f, rows));
  return out;
}

}  // namespace mmu
