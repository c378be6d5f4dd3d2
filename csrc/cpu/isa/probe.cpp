// The probe loops of one ISA (see isa.h).
#include "cpu/isa/isa.h"

#include "cpu/probe.h"
#include "cpu/probe_kernels.h"

namespace attnkit::cpu::isa::ATTNKIT_ISA {

namespace {
static_assert(Vec::width == 1 || Vec::width == 8 || Vec::width == 16,
              "a new vector width needs its FMA chains and read accumulators here");
constexpr bool kScalar = Vec::width == 1;
// FMA chains, at least latency x pipes of the ISA. Vector ISAs: two FMA pipes
// with a latency of 4-5 cycles need 8-10 chains; 12 leave room for a slower
// FMA and still fit the register file with the two constants. The generic Vec
// is one float: the compiler packs the scalar chains into SSE2 registers (4
// lanes), where a*b+c is a multiply and a dependent add (latency 6-8 cycles)
// on two pipes each, and 12 registers of 4 chains stay within the 16 xmm
// registers.
constexpr int kFmaChains = kScalar ? 48 : 12;
// Independent sums of the read pass: four vectors, or sixteen scalars that
// the compiler packs into four SSE2 accumulators.
constexpr int kReadAccumulators = kScalar ? 16 : 4;
}  // namespace

const ProbeKernels probe_table = {
    probe_kernels::memory_read<Vec, kReadAccumulators>,
    probe_kernels::memory_write<Vec>,
    probe_kernels::memory_copy<Vec>,
    probe_kernels::memory_triad<Vec>,
    probe_kernels::fma_chains<Vec, kFmaChains>,
    2 * Vec::width * kFmaChains,
};

}  // namespace attnkit::cpu::isa::ATTNKIT_ISA
