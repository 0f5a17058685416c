// Helpers of the cross-match output tests (pair_csv_test, xmatch_answers_test).
#pragma once

#include <omp.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "mmu/sky_source.h"

namespace mmu::test {

// n objects of one survey with the integer ids first, first + 1, ... (no positions).
inline SkySource integer_sky_source(size_t n, int64_t first, const std::string& survey) {
  SkySource s;
  std::vector<uint64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = static_cast<uint64_t>(first + static_cast<int64_t>(i));
  s.ids.append_integers(ObjectIds::Kind::kSigned, std::move(ids));
  s.survey_names = {survey};
  s.survey_of.assign(n, 0);
  return s;
}

// What write(fd) writes to a file, with `threads` OpenMP threads.
template <typename Write>
std::string written_with_threads(Write write, int threads) {
  const std::string path = "xmatch_output_test_" + std::to_string(::getpid()) + ".csv";
  std::FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  write(::fileno(f));
  omp_set_num_threads(before);
  std::fclose(f);
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  std::remove(path.c_str());
  return text.str();
}

}  // namespace mmu::test
