// attnkit_bench [--only NAME[,NAME...]] [--threads 1,2] [--mib 128]
//               [--probe-mib 512] [--repeats 10] [--isa generic|avx2|avx512]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <sstream>
#include <string>
#include <utility>

#include "bench.h"
#include "core/cpu_features.h"
#include "cpu/probe.h"

namespace attnkit::bench {
namespace {

struct Benchmark {
  const char* name;
  void (*run)(const Options&, Report&);
  const char* what;
};

const Benchmark kBenchmarks[] = {
    {"probe", bench_probe, "memory bandwidth (read, write, copy, triad) and FP32 FMA peak"},
    {"activation", bench_activation, "GELU forward and backward, both forms"},
    {"gemm", bench_gemm, "GEMM: square and Transformer shapes, decode shapes"},
    {"attention", bench_attention, "fused attention forward and forward+backward"},
    {"softmax", bench_softmax, "softmax and log_softmax forward and backward, rows of 1024 and 4096"},
    {"norm", bench_norm, "LayerNorm, RMSNorm, fused add+LayerNorm forward and backward, C = 768 and 4096"},
    {"loss", bench_loss, "cross-entropy forward and backward, V = 50257 and V = 65"},
};

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  for (std::string part; std::getline(stream, part, ',');)
    if (!part.empty()) parts.push_back(part);
  return parts;
}

long long parse_integer(const std::string& flag, const std::string& text, long long low) {
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < low) {
    std::fprintf(stderr, "attnkit_bench: %s expects an integer >= %lld, got '%s'\n", flag.c_str(), low, text.c_str());
    std::exit(2);
  }
  return value;
}

void usage(FILE* out) {
  std::fprintf(out,
               "usage: attnkit_bench [--only NAME[,NAME...]] [--threads 1,2] [--mib 128]\n"
               "                     [--probe-mib 512] [--repeats 10] [--isa generic|avx2|avx512]\n"
               "benchmarks:\n");
  for (const Benchmark& b : kBenchmarks) std::fprintf(out, "  %-12s %s\n", b.name, b.what);
}

std::map<std::pair<std::string, int>, double>& memory_limit_cache() {
  static std::map<std::pair<std::string, int>, double> cache;
  return cache;
}

}  // namespace

double memory_limit(const std::string& kind, int threads, const Options& options) {
  auto& cache = memory_limit_cache();
  const auto key = std::make_pair(kind, threads);
  auto it = cache.find(key);
  if (it == cache.end())
    it = cache.emplace(key, cpu::memory_bandwidth(cpu::parse_memory_pass(kind), options.probe_bytes, threads, 5)).first;
  return it->second;
}

int run(int argc, char** argv) {
  Options options;
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "attnkit_bench: %s needs a value\n", flag.c_str());
      usage(stderr);
      return 2;
    }
    const std::string value = argv[++i];
    if (flag == "--only") {
      only = split(value);
    } else if (flag == "--threads") {
      options.threads.clear();
      for (const std::string& t : split(value)) options.threads.push_back(int(parse_integer(flag, t, 1)));
    } else if (flag == "--mib") {
      options.bytes_per_array = parse_integer(flag, value, 1) << 20;
    } else if (flag == "--probe-mib") {
      options.probe_bytes = parse_integer(flag, value, 1) << 20;
    } else if (flag == "--repeats") {
      options.repeats = int(parse_integer(flag, value, 1));
    } else if (flag == "--isa") {
      select_cpu_isa(value);
    } else {
      std::fprintf(stderr, "attnkit_bench: unknown option %s\n", flag.c_str());
      usage(stderr);
      return 2;
    }
  }
  for (const std::string& name : only) {
    const bool known =
        std::any_of(std::begin(kBenchmarks), std::end(kBenchmarks), [&](const Benchmark& b) { return name == b.name; });
    if (!known) {
      std::fprintf(stderr, "attnkit_bench: no benchmark named '%s'\n", name.c_str());
      usage(stderr);
      return 2;
    }
  }

  std::printf("attnkit %s, %s build, %s; cpu isa %s\n", ATTNKIT_VERSION_STRING, ATTNKIT_BUILD_TYPE, ATTNKIT_COMPILER,
              cpu_isa_name(active_cpu_isa()));
  Report report;
  for (const Benchmark& b : kBenchmarks)
    if (only.empty() || std::find(only.begin(), only.end(), b.name) != only.end()) b.run(options, report);
  report.print();
  return 0;
}

}  // namespace attnkit::bench

int main(int argc, char** argv) {
  try {
    return attnkit::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attnkit_bench: %s\n", e.what());
    return 1;
  }
}
