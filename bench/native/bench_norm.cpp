// The normalization cases of bench/bench_norm.py through cpu:: (what ops::
// calls after its checks): LayerNorm, RMSNorm and the fused residual add +
// LayerNorm over rows of 768 and 4096 filling --mib per [N, C] array, with
// weight and bias and their gradients. Bytes as in bench_norm.py: the [N, C]
// arrays read and written, the per-row statistics and the [C] parameters;
// forward against the probe's copy pass, backward against its triad pass.
#include <random>
#include <string>
#include <vector>

#include "bench.h"
#include "core/threading.h"
#include "cpu/norm.h"

namespace attnkit::bench {

void bench_norm(const Options& options, Report& report) {
  constexpr float kLayerNormEps = 1e-5f, kRmsNormEps = 1e-6f;
  const std::int64_t elements = options.bytes_per_array / std::int64_t(sizeof(float));
  std::mt19937 generator(0);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto random_vector = [&](std::int64_t n) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& value : v) value = normal(generator);
    return v;
  };
  // Inputs: x, residual, dy (the gradient of the normalized output), and the
  // gradient of add_layer_norm's sum output.
  const std::vector<float> x = random_vector(elements), residual = random_vector(elements),
                           dy = random_vector(elements), dsum = random_vector(elements);
  std::vector<float> y(elements), sum(elements), dx(elements);

  for (std::int64_t width : {768, 4096}) {
    const std::int64_t rows = elements / width;  // --mib >= 1: at least 64 rows
    const std::vector<float> weight = random_vector(width), bias = random_vector(width);
    std::vector<float> mean(rows), rstd(rows), dweight(width), dbias(width);
    const double nc = double(rows * width), n = double(rows), c = double(width);
    const std::string size = "C=" + std::to_string(width) + ", " + std::to_string(rows) + " rows";
    for (int threads : options.threads) {
      set_num_threads(threads);
      const double copy = memory_limit("copy", threads, options);
      const double triad = memory_limit("triad", threads, options);
      auto add = [&](const char* op, const Timing& t, double bytes, bool forward) {
        report.add(
            timed_result(op, size, threads, t, bytes, "GB/s", forward ? copy : triad, forward ? "copy" : "triad"));
      };
      // Each backward runs on the statistics of its own forward, timed just before.
      add("layer_norm forward",
          time_function(
              [&] {
                cpu::layer_norm_forward(y.data(), mean.data(), rstd.data(), x.data(), weight.data(), bias.data(), rows,
                                        width, kLayerNormEps);
              },
              options.warmup, options.repeats),
          8 * nc + 8 * n + 8 * c, true);
      add("layer_norm backward",
          time_function(
              [&] {
                cpu::layer_norm_backward(dx.data(), dweight.data(), dbias.data(), dy.data(), nullptr, x.data(),
                                         weight.data(), mean.data(), rstd.data(), rows, width, kLayerNormEps);
              },
              options.warmup, options.repeats),
          12 * nc + 8 * n + 12 * c, false);
      add("rms_norm forward",
          time_function(
              [&] { cpu::rms_norm_forward(y.data(), rstd.data(), x.data(), weight.data(), rows, width, kRmsNormEps); },
              options.warmup, options.repeats),
          8 * nc + 4 * n + 4 * c, true);
      add("rms_norm backward",
          time_function(
              [&] {
                cpu::rms_norm_backward(dx.data(), dweight.data(), dy.data(), x.data(), weight.data(), rstd.data(), rows,
                                       width, kRmsNormEps);
              },
              options.warmup, options.repeats),
          12 * nc + 4 * n + 8 * c, false);
      add("add_layer_norm forward",
          time_function(
              [&] {
                cpu::add_layer_norm_forward(sum.data(), y.data(), mean.data(), rstd.data(), x.data(), residual.data(),
                                            weight.data(), bias.data(), rows, width, kLayerNormEps);
              },
              options.warmup, options.repeats),
          16 * nc + 8 * n + 8 * c, true);
      // Backward of both outputs: reads dsum, dy and the saved sum (3 reads, 1
      // write); triad (2 reads, 1 write) is the nearest probe pass.
      add("add_layer_norm backward",
          time_function(
              [&] {
                cpu::layer_norm_backward(dx.data(), dweight.data(), dbias.data(), dy.data(), dsum.data(), sum.data(),
                                         weight.data(), mean.data(), rstd.data(), rows, width, kLayerNormEps);
              },
              options.warmup, options.repeats),
          16 * nc + 8 * n + 12 * c, false);
    }
  }
}

}  // namespace attnkit::bench
