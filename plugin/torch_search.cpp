// Exact search on a LibTorch device (see mmu/device_search.h): part of the
// plug-in libmmu_models.so, opened by src/vector/device_search.cpp.
//
// Per block of rows: scores = queries x rows^T (fp32; fp16 rows widened on the
// device), torch::topk gives each query's k-th best score in the block, and
// every row scoring at least that goes to the host. Taking the whole tie at
// the threshold (not just topk's k, whose choice among equal scores LibTorch
// leaves open) lets the host merge rank exactly as exact_top_k: higher score,
// then lower row.
#include <ATen/Context.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>

#include "mmu/device_search.h"
#include "mmu/error.h"
#include "torch_device.h"

namespace mmu {

namespace {

inline bool ranks_before(const Hit& a, const Hit& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// Keeps the k best of `hits` (in any order: sorting happens once, at the end).
void keep_best(std::vector<Hit>& hits, size_t k) {
  if (hits.size() <= k) return;
  std::nth_element(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(k - 1), hits.end(), ranks_before);
  hits.resize(k);
}

class TorchIndex : public DeviceIndex {
 public:
  TorchIndex(const VectorMatrix& base, const std::string& device_name, int64_t block_bytes)
      : device_(torch_device(device_name, "torch-cpu")), name_(device_name), rows_(base.rows), dim_(base.dim),
        block_bytes_(block_bytes) {
    const auto dtype = base.type == VectorType::kF32 ? torch::kFloat32 : torch::kFloat16;
    elem_bytes_ = base.type == VectorType::kF32 ? 4 : 2;
    torch::InferenceMode guard;
    if (device_.is_cuda()) {
      // Scores must be fp32 sums, as BLAS's: no TF32 tensor-core rounding.
      at::globalContext().setAllowTF32CuBLAS(false);
    }
    if (rows_ == 0 || base.data == nullptr) {
      vectors_ = torch::empty({0, dim_}, torch::TensorOptions().dtype(dtype).device(device_));
      return;
    }
    // from_blob does not copy: on the CPU device the mapped file is scanned in place.
    torch::Tensor host = torch::from_blob(const_cast<void*>(base.data), {rows_, dim_}, torch::TensorOptions().dtype(dtype));
    if (device_.is_cpu()) {
      vectors_ = host;
      return;
    }
    try {
      vectors_ = torch::empty({rows_, dim_}, torch::TensorOptions().dtype(dtype).device(device_));
      // Copied in blocks: each pulls its pages of the mapping in once.
      const int64_t step = std::max<int64_t>(1, block_bytes_ / (dim_ * elem_bytes_));
      for (int64_t first = 0; first < rows_; first += step) {
        const int64_t n = std::min(step, rows_ - first);
        vectors_.narrow(0, first, n).copy_(host.narrow(0, first, n));
      }
    } catch (const c10::Error& e) {
      throw InvalidArgument("--device " + name_ + ": cannot hold the space's " + std::to_string(rows_) + " x " +
                            std::to_string(dim_) + " vectors (" + std::to_string((rows_ * dim_ * elem_bytes_) >> 20) +
                            " MB) on the device: " + e.what_without_backtrace());
    }
  }

  int64_t rows() const override { return rows_; }
  int64_t dim() const override { return dim_; }

 protected:
  std::vector<std::vector<Hit>> search(const float* queries, int64_t nq, int64_t k,
                                       const std::vector<int64_t>* subset) const override {
    try {
      return search_blocks(queries, nq, k, subset);
    } catch (const c10::Error& e) {
      throw InternalError("search on --device " + name_ + " failed in LibTorch: " + e.what_without_backtrace());
    }
  }

 private:
  std::vector<std::vector<Hit>> search_blocks(const float* queries, int64_t nq, int64_t k,
                                              const std::vector<int64_t>* subset) const {
    torch::InferenceMode guard;
    std::vector<std::vector<Hit>> out(static_cast<size_t>(nq));
    const int64_t n_items = subset ? static_cast<int64_t>(subset->size()) : rows_;
    if (n_items == 0) return out;
    const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
    const torch::Tensor q = torch::from_blob(const_cast<float*>(queries), {nq, dim_}, f32).to(device_);
    torch::Tensor sub;
    if (subset)
      sub = torch::from_blob(const_cast<int64_t*>(subset->data()), {n_items}, torch::TensorOptions().dtype(torch::kInt64))
                .to(device_);
    // Device bytes a block needs per row: scores and their mask per query,
    // plus the rows themselves when they are gathered (subset) or widened (fp16).
    const bool gathered = subset != nullptr, widened = elem_bytes_ != 4;
    const int64_t per_row = 5 * nq + (gathered ? dim_ * elem_bytes_ : 0) + (widened ? dim_ * 4 : 0);
    const int64_t block = std::max<int64_t>(1, block_bytes_ / per_row);
    const size_t keep = static_cast<size_t>(k);

    for (int64_t first = 0; first < n_items; first += block) {
      const int64_t nb = std::min(block, n_items - first);
      torch::Tensor rows = gathered ? vectors_.index_select(0, sub.narrow(0, first, nb)) : vectors_.narrow(0, first, nb);
      if (widened) rows = rows.to(torch::kFloat32);
      const torch::Tensor scores = torch::mm(q, rows.t());  // nq x nb
      const int64_t kb = std::min(k, nb);
      const torch::Tensor kth = std::get<0>(scores.topk(kb, 1, /*largest=*/true, /*sorted=*/false)).amin(1, true);
      const torch::Tensor mask = scores >= kth;
      const torch::Tensor where = mask.nonzero().to(torch::kCPU).contiguous();  // m x 2: (query, row in block)
      const torch::Tensor vals = scores.masked_select(mask).to(torch::kCPU).contiguous();  // same order
      const int64_t m = where.size(0);
      const int64_t* w = where.data_ptr<int64_t>();
      const float* v = vals.data_ptr<float>();
      for (int64_t i = 0; i < m; ++i) {
        const int64_t j = w[2 * i], local = first + w[2 * i + 1];
        out[j].push_back({subset ? (*subset)[local] : local, v[i]});
      }
      for (auto& hits : out) keep_best(hits, keep);
    }
    for (auto& hits : out) std::sort(hits.begin(), hits.end(), ranks_before);
    return out;
  }

  torch::Device device_;
  std::string name_;
  int64_t rows_, dim_, block_bytes_, elem_bytes_ = 4;
  torch::Tensor vectors_;  // rows_ x dim_, as stored (fp32 or fp16), on device_
};

}  // namespace

}  // namespace mmu

// Entry point (see src/vector/device_search.cpp): the vectors of one space on a device.
extern "C" __attribute__((visibility("default"))) mmu::DeviceIndex* mmu_create_torch_index(
    const mmu::VectorMatrix& base, const char* device, int64_t block_bytes) {
  try {
    return new mmu::TorchIndex(base, device, block_bytes);
  } catch (const c10::Error& e) {
    throw mmu::InternalError(std::string("LibTorch failed opening a device index: ") + e.what_without_backtrace());
  }
}
