// GpuList: the unpinned chunks that have a GPU copy, most recently used first, threaded through
// ChunkEntry::gpu_prev/next. Room on the GPU is made from the cold end. Not thread-safe: guarded by
// Store::mu_.
#pragma once

#include "entry_list.h"

namespace kvtier {

class GpuList : public EntryList<&ChunkEntry::gpu_prev, &ChunkEntry::gpu_next, &ChunkEntry::gpu_listed> {};

}  // namespace kvtier
