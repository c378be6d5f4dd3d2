#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <tuple>

#include "ops/attention.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace attnkit::python {
namespace {

ops::AttentionOptions options(bool causal, std::int64_t window, double scale, const std::optional<Array>& key_lengths,
                              const std::optional<Array>& key_padding_mask, double dropout_p,
                              std::uint64_t dropout_seed, std::uint64_t dropout_offset, std::int64_t dilation,
                              const std::optional<Array>& global_tokens, const std::optional<Array>& block_mask,
                              std::int64_t block_size, bool for_backward = true) {
  ops::AttentionOptions o;
  o.dilation = dilation;
  o.global_tokens = global_tokens.value_or(Array());
  o.block_mask = block_mask.value_or(Array());
  o.block_size = block_size;
  o.for_backward = for_backward;
  o.dropout_p = dropout_p;
  o.dropout_seed = dropout_seed;
  o.dropout_offset = dropout_offset;
  o.causal = causal;
  o.window = window;
  o.scale = scale;
  o.key_lengths = key_lengths.value_or(Array());
  o.key_padding_mask = key_padding_mask.value_or(Array());
  return o;
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def(
      "attention_forward",
      [](const Array& q, const Array& k, const Array& v, bool causal, std::int64_t window, double scale,
         const std::optional<Array>& key_lengths, const std::optional<Array>& key_padding_mask, double dropout_p,
         std::uint64_t dropout_seed, std::uint64_t dropout_offset, std::int64_t dilation,
         const std::optional<Array>& global_tokens, const std::optional<Array>& block_mask, std::int64_t block_size,
         bool for_backward) {
        ops::AttentionForward r = ops::attention_forward(
            q, k, v,
            options(causal, window, scale, key_lengths, key_padding_mask, dropout_p, dropout_seed, dropout_offset,
                    dilation, global_tokens, block_mask, block_size, for_backward));
        return std::make_pair(r.out, r.lse);
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("causal") = false, py::arg("window") = 0,
      py::arg("scale") = 0.0, py::arg("key_lengths") = std::nullopt, py::arg("key_padding_mask") = std::nullopt,
      py::arg("dropout_p") = 0.0, py::arg("dropout_seed") = 0, py::arg("dropout_offset") = 0, py::arg("dilation") = 1,
      py::arg("global_tokens") = std::nullopt, py::arg("block_mask") = std::nullopt, py::arg("block_size") = 0,
      py::arg("for_backward") = true, py::call_guard<py::gil_scoped_release>(),
      "-> (out [B, Tq, H, D], lse [B, H, Tq]); for_backward=False allows the decode path");
  m.def(
      "attention_backward",
      [](const Array& grad_out, const Array& q, const Array& k, const Array& v, const Array& out, const Array& lse,
         bool causal, std::int64_t window, double scale, const std::optional<Array>& key_lengths,
         const std::optional<Array>& key_padding_mask, double dropout_p, std::uint64_t dropout_seed,
         std::uint64_t dropout_offset, std::int64_t dilation, const std::optional<Array>& global_tokens,
         const std::optional<Array>& block_mask, std::int64_t block_size) {
        ops::AttentionGradients g = ops::attention_backward(
            grad_out, q, k, v, out, lse,
            options(causal, window, scale, key_lengths, key_padding_mask, dropout_p, dropout_seed, dropout_offset,
                    dilation, global_tokens, block_mask, block_size));
        return std::make_tuple(g.dq, g.dk, g.dv);
      },
      py::arg("grad_output"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"),
      py::arg("causal") = false, py::arg("window") = 0, py::arg("scale") = 0.0, py::arg("key_lengths") = std::nullopt,
      py::arg("key_padding_mask") = std::nullopt, py::arg("dropout_p") = 0.0, py::arg("dropout_seed") = 0,
      py::arg("dropout_offset") = 0, py::arg("dilation") = 1, py::arg("global_tokens") = std::nullopt,
      py::arg("block_mask") = std::nullopt, py::arg("block_size") = 0, py::call_guard<py::gil_scoped_release>(),
      "-> (dq, dk, dv)");
  m.def(
      "attention_qkv_forward",
      [](const Array& qkv, std::int64_t num_heads, std::int64_t num_kv_heads, bool causal, std::int64_t window,
         double scale, const std::optional<Array>& key_lengths, const std::optional<Array>& key_padding_mask,
         double dropout_p, std::uint64_t dropout_seed, std::uint64_t dropout_offset, std::int64_t dilation,
         const std::optional<Array>& global_tokens, const std::optional<Array>& block_mask, std::int64_t block_size,
         bool for_backward) {
        ops::AttentionForward r = ops::attention_qkv_forward(
            qkv, num_heads, num_kv_heads,
            options(causal, window, scale, key_lengths, key_padding_mask, dropout_p, dropout_seed, dropout_offset,
                    dilation, global_tokens, block_mask, block_size, for_backward));
        return std::make_pair(r.out, r.lse);
      },
      py::arg("qkv"), py::arg("num_heads"), py::arg("num_kv_heads"), py::arg("causal") = false, py::arg("window") = 0,
      py::arg("scale") = 0.0, py::arg("key_lengths") = std::nullopt, py::arg("key_padding_mask") = std::nullopt,
      py::arg("dropout_p") = 0.0, py::arg("dropout_seed") = 0, py::arg("dropout_offset") = 0, py::arg("dilation") = 1,
      py::arg("global_tokens") = std::nullopt, py::arg("block_mask") = std::nullopt, py::arg("block_size") = 0,
      py::arg("for_backward") = true, py::call_guard<py::gil_scoped_release>(),
      "qkv [B, T, (H + 2 Hkv) D] -> (out [B, T, H, D], lse [B, H, T])");
  m.def(
      "attention_qkv_backward",
      [](const Array& grad_out, const Array& qkv, const Array& out, const Array& lse, std::int64_t num_heads,
         std::int64_t num_kv_heads, bool causal, std::int64_t window, double scale,
         const std::optional<Array>& key_lengths, const std::optional<Array>& key_padding_mask, double dropout_p,
         std::uint64_t dropout_seed, std::uint64_t dropout_offset, std::int64_t dilation,
         const std::optional<Array>& global_tokens, const std::optional<Array>& block_mask, std::int64_t block_size) {
        return ops::attention_qkv_backward(
            grad_out, qkv, out, lse, num_heads, num_kv_heads,
            options(causal, window, scale, key_lengths, key_padding_mask, dropout_p, dropout_seed, dropout_offset,
                    dilation, global_tokens, block_mask, block_size));
      },
      py::arg("grad_output"), py::arg("qkv"), py::arg("out"), py::arg("lse"), py::arg("num_heads"),
      py::arg("num_kv_heads"), py::arg("causal") = false, py::arg("window") = 0, py::arg("scale") = 0.0,
      py::arg("key_lengths") = std::nullopt, py::arg("key_padding_mask") = std::nullopt, py::arg("dropout_p") = 0.0,
      py::arg("dropout_seed") = 0, py::arg("dropout_offset") = 0, py::arg("dilation") = 1,
      py::arg("global_tokens") = std::nullopt, py::arg("block_mask") = std::nullopt, py::arg("block_size") = 0,
      py::call_guard<py::gil_scoped_release>(), "-> d(qkv) [B, T, (H + 2 Hkv) D]");
}

}  // namespace attnkit::python
