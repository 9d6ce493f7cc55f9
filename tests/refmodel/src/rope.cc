#include "kvtier/refmodel/rope.h"

#include <cassert>
#include <cmath>

namespace kvtier::refmodel {

void ApplyRope(std::span<float> vec, int head_size, int position, float theta) {
  assert(head_size > 0 && head_size % 2 == 0 && vec.size() % size_t(head_size) == 0);
  // Same float expressions as llama2.c, whose outputs the reference numbers were checked against.
  for (int i = 0; i < head_size; i += 2) {
    const float freq = 1.0f / std::pow(theta, float(i) / float(head_size));
    const float angle = float(position) * freq;
    const float c = std::cos(angle), s = std::sin(angle);
    for (size_t h = 0; h < vec.size(); h += size_t(head_size)) {
      float& x = vec[h + i];
      float& y = vec[h + i + 1];
      const float x0 = x, y0 = y;
      x = x0 * c - y0 * s;
      y = x0 * s + y0 * c;
    }
  }
}

}  // namespace kvtier::refmodel
