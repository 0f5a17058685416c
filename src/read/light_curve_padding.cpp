// Which light-curve points are MMU padding, decided from the data of each
// band row. Builder conventions (docs/MMU-FORMAT.md, and the MMU builders):
// - SNANA template, scripts/{swift_sne_ia,foundation,ps1_sne_ia,snls,des_y3_sne_ia}/build_parent_sample.py:
//   np.pad(..., constant_values=-99 if key == 'MJD' else 0) -> time -99, flux and flux_err 0, at the row's end.
// - scripts/{cfa,csp}/build_parent_sample.py: the same line, but the key is "time", so all three are 0.
// - scripts/plasticc/build_parent_sample.py (np.zeros) and scripts/tess/build_parent_sample.py
//   (np.pad mode='constant'): all three 0 at the row's end; a real plasticc flux can be exactly 0
//   and a real tess cadence can hold a NaN flux, so only the time tells padding apart.
// No real MJD, JD or BTJD is -99 or 0, so a trailing run of (sentinel time, 0, 0) is padding for
// certain; anything else that looks like padding is an assumption, counted for a warning.
#include <cmath>
#include <string>

#include "mmu/mmu_files.h"

namespace mmu {
namespace {

constexpr float kSnanaPadTime = -99.0f;
constexpr float kZeroPadTime = 0.0f;

bool is_pad_time(float t) { return t == kSnanaPadTime || t == kZeroPadTime; }

}  // namespace

LightCurvePadding& LightCurvePadding::operator+=(const LightCurvePadding& o) {
  trailing_minus99 += o.trailing_minus99;
  trailing_zero += o.trailing_zero;
  inner_padding += o.inner_padding;
  sentinel_kept += o.sentinel_kept;
  non_finite += o.non_finite;
  return *this;
}

void mark_light_curve_padding(LightCurveBatch* b) {
  const int64_t len = b->length;
  b->good.assign(b->time.size(), 1);
  b->padding = LightCurvePadding{};
  LightCurvePadding& pad = b->padding;
  auto pad_point = [&](size_t p, float pad_time) {
    return b->time[p] == pad_time && b->value[p] == 0.0f && b->error[p] == 0.0f;
  };
  for (int64_t row = 0; row < b->count * b->bands; ++row) {
    const size_t base = static_cast<size_t>(row * len);
    // The trailing run follows the convention of the row's last point.
    int64_t end = len;
    if (len > 0 && is_pad_time(b->time[base + len - 1])) {
      const float pad_time = b->time[base + len - 1];
      while (end > 0 && pad_point(base + end - 1, pad_time)) --end;
      (pad_time == kSnanaPadTime ? pad.trailing_minus99 : pad.trailing_zero) += len - end;
    }
    for (int64_t k = end; k < len; ++k) b->good[base + k] = 0;
    for (int64_t k = 0; k < end; ++k) {
      const size_t p = base + k;
      if (is_pad_time(b->time[p])) {
        if (b->value[p] == 0.0f && b->error[p] == 0.0f) {
          b->good[p] = 0;
          ++pad.inner_padding;
        } else {
          ++pad.sentinel_kept;
        }
      } else if (std::isfinite(b->time[p]) && (!std::isfinite(b->value[p]) || !std::isfinite(b->error[p]))) {
        b->good[p] = 0;
        ++pad.non_finite;
      }
    }
  }
}

std::vector<std::string> padding_warnings(const std::string& path, const LightCurvePadding& p) {
  std::vector<std::string> out;
  const std::string file = "'" + path + "': ";
  if (p.trailing_minus99 > 0 && p.trailing_zero > 0)
    out.push_back(file + "light curves end in both time -99 padding (" + std::to_string(p.trailing_minus99) +
                  " points, SNANA-template builders) and time 0 padding (" + std::to_string(p.trailing_zero) +
                  " points, cfa/csp/plasticc/tess builders), each with value and error 0; both taken as padding");
  if (p.inner_padding > 0)
    out.push_back(file + std::to_string(p.inner_padding) +
                  " light-curve points look like padding (time -99 or 0, value and error 0) but have observations "
                  "after them in their band; taken as missing");
  if (p.sentinel_kept > 0)
    out.push_back(file + std::to_string(p.sentinel_kept) +
                  " light-curve points have a padding time (-99 or 0) but a non-zero value or error; "
                  "kept as observations at that time");
  if (p.non_finite > 0)
    out.push_back(file + std::to_string(p.non_finite) +
                  " light-curve points have a time but a NaN/Inf value or error; taken as missing");
  return out;
}

}  // namespace mmu
