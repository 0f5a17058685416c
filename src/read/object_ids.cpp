#include <charconv>
#include <cstring>
#include <iterator>

#include "mmu/mmu_files.h"

namespace mmu {

std::string ObjectIds::text(size_t i) const {
  if (kind_ == Kind::kText) return texts_[i];
  char buf[kMaxIntegerText];
  return std::string(buf, write(i, buf));
}

char* ObjectIds::write(size_t i, char* to) const {
  switch (kind_) {
    case Kind::kSigned:
      return std::to_chars(to, to + kMaxIntegerText, static_cast<int64_t>(numbers_[i])).ptr;
    case Kind::kUnsigned:
      return std::to_chars(to, to + kMaxIntegerText, numbers_[i]).ptr;
    case Kind::kText:
      break;
  }
  std::memcpy(to, texts_[i].data(), texts_[i].size());
  return to + texts_[i].size();
}

size_t ObjectIds::longest() const {
  if (kind_ != Kind::kText) return kMaxIntegerText;
  size_t most = 0;
  for (const std::string& t : texts_) most = std::max(most, t.size());
  return most;
}

void ObjectIds::to_text() {
  if (kind_ == Kind::kText) return;
  std::vector<std::string> texts(numbers_.size());
  for (size_t i = 0; i < numbers_.size(); ++i) texts[i] = text(i);
  texts_.swap(texts);
  numbers_ = {};
  kind_ = Kind::kText;
}

void ObjectIds::append_integers(Kind kind, std::vector<uint64_t>&& numbers) {
  append_integer_column(kind, Column<uint64_t>(numbers.begin(), numbers.end()));
}

void ObjectIds::append_integer_column(Kind kind, Column<uint64_t>&& numbers) {
  if (size() == 0 && texts_.empty()) {
    kind_ = kind;
    numbers_.swap(numbers);
    return;
  }
  if (kind == kind_) {
    numbers_.insert(numbers_.end(), numbers.begin(), numbers.end());
    return;
  }
  // Signed and unsigned files, or integers and strings: one text form for all.
  ObjectIds more;
  more.append_integer_column(kind, std::move(numbers));
  more.to_text();
  append_texts(std::move(more.texts_));
}

void ObjectIds::append_texts(std::vector<std::string>&& texts) {
  to_text();
  if (texts_.empty()) {
    texts_.swap(texts);
  } else {
    texts_.insert(texts_.end(), std::make_move_iterator(texts.begin()), std::make_move_iterator(texts.end()));
  }
}

}  // namespace mmu
