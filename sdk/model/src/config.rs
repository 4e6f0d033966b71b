//! `LlamaConfig`: the architecture read from and written to a Hugging Face `config.json`.
//! Reads both the transformers 4.x keys (`rope_theta`, `torch_dtype`) and the 5.x ones
//! (`rope_parameters`, `dtype`); writes keys both versions load. A config this model does not
//! compute exactly as transformers would (another architecture, rope scaling, biases, another
//! activation) is refused with an error naming the field.

use std::path::Path;

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Map, Value as Json};

/// Architectures computed exactly like `LlamaForCausalLM` (Mistral without a sliding window).
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["LlamaForCausalLM", "MistralForCausalLM"];

#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
    pub bos_token_id: Option<u32>,
    /// Every end-of-sequence id, as config.json lists them (Llama 3 Instruct has three); empty
    /// when it names none. Written back as a number when there is one, a list otherwise.
    pub eos_token_id: Vec<u32>,
    /// The standard deviation of a fresh initialisation (`initializer_range`).
    pub initializer_range: f64,
}

impl LlamaConfig {
    /// A config for a fresh model; the remaining fields take transformers' defaults.
    pub fn new(vocab_size: usize, hidden_size: usize, intermediate_size: usize, num_hidden_layers: usize, num_attention_heads: usize) -> LlamaConfig {
        LlamaConfig {
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: num_attention_heads,
            head_dim: hidden_size / num_attention_heads.max(1),
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-6,
            tie_word_embeddings: false,
            max_position_embeddings: 2048,
            bos_token_id: None,
            eos_token_id: Vec::new(),
            initializer_range: 0.02,
        }
    }

    /// Reads `DIR/config.json`.
    pub fn from_dir(dir: &Path) -> anyhow::Result<LlamaConfig> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let json: Json = serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
        LlamaConfig::from_json(&json).with_context(|| format!("{}", path.display()))
    }

    /// Parses a config.json object; errors name the offending field.
    pub fn from_json(j: &Json) -> anyhow::Result<LlamaConfig> {
        let o = j.as_object().ok_or_else(|| anyhow!("config.json must be a JSON object"))?;
        if let Some(archs) = o.get("architectures") {
            let archs: Vec<&str> = archs.as_array().map(|a| a.iter().filter_map(Json::as_str).collect()).unwrap_or_default();
            if let Some(bad) = archs.iter().find(|a| !SUPPORTED_ARCHITECTURES.contains(a)) {
                bail!("`architectures`: {bad} is not supported; this trainer computes {} (Llama-compatible decoders)", SUPPORTED_ARCHITECTURES.join(", "));
            }
        }
        let uint = |k: &str| -> anyhow::Result<Option<usize>> {
            match o.get(k) {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v.as_u64().map(|x| Some(x as usize)).ok_or_else(|| anyhow!("`{k}` must be a non-negative integer, got {v}")),
            }
        };
        let need = |k: &str| -> anyhow::Result<usize> { uint(k)?.ok_or_else(|| anyhow!("`{k}` is missing")) };
        let float = |k: &str| -> anyhow::Result<Option<f64>> {
            match o.get(k) {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| anyhow!("`{k}` must be a number, got {v}")),
            }
        };
        let flag = |k: &str| -> anyhow::Result<bool> {
            match o.get(k) {
                None | Some(Json::Null) => Ok(false),
                Some(v) => v.as_bool().ok_or_else(|| anyhow!("`{k}` must be true or false, got {v}")),
            }
        };
        // What would make the computation differ from ours.
        for k in ["attention_bias", "mlp_bias"] {
            if flag(k)? {
                bail!("`{k}`: true is not supported (Llama has no biases); set it to false or use another trainer");
            }
        }
        if let Some(act) = o.get("hidden_act").and_then(Json::as_str) {
            if act != "silu" {
                bail!("`hidden_act`: `{act}` is not supported; Llama's MLP uses silu");
            }
        }
        if !matches!(o.get("rope_scaling"), None | Some(Json::Null)) {
            bail!("`rope_scaling` is not supported (only plain rotary embeddings); remove it or set it to null");
        }
        if !matches!(o.get("sliding_window"), None | Some(Json::Null)) {
            bail!("`sliding_window` is not supported (full causal attention only); set it to null");
        }
        let mut rope_theta = float("rope_theta")?;
        if let Some(p) = o.get("rope_parameters").filter(|p| !p.is_null()) {
            let ty = p.get("rope_type").and_then(Json::as_str).unwrap_or("default");
            if ty != "default" {
                bail!("`rope_parameters.rope_type`: `{ty}` is not supported (only `default` rotary embeddings)");
            }
            if let Some(t) = p.get("rope_theta") {
                rope_theta = Some(t.as_f64().ok_or_else(|| anyhow!("`rope_parameters.rope_theta` must be a number, got {t}"))?);
            }
        }
        let tokens = |k: &str| -> anyhow::Result<Vec<u32>> {
            let id = |v: &Json| v.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(|| anyhow!("`{k}` must be a token id or a list of them, got {v}"));
            match o.get(k) {
                None | Some(Json::Null) => Ok(Vec::new()),
                Some(Json::Array(a)) => a.iter().map(id).collect(),
                Some(v) => Ok(vec![id(v)?]),
            }
        };
        let hidden_size = need("hidden_size")?;
        let num_attention_heads = need("num_attention_heads")?;
        let cfg = LlamaConfig {
            vocab_size: need("vocab_size")?,
            hidden_size,
            intermediate_size: need("intermediate_size")?,
            num_hidden_layers: need("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads: uint("num_key_value_heads")?.unwrap_or(num_attention_heads),
            head_dim: uint("head_dim")?.unwrap_or(hidden_size / num_attention_heads.max(1)),
            rope_theta: rope_theta.unwrap_or(10_000.0),
            rms_norm_eps: float("rms_norm_eps")?.unwrap_or(1e-6),
            tie_word_embeddings: flag("tie_word_embeddings")?,
            max_position_embeddings: uint("max_position_embeddings")?.unwrap_or(2048),
            bos_token_id: tokens("bos_token_id")?.first().copied(),
            eos_token_id: tokens("eos_token_id")?,
            initializer_range: float("initializer_range")?.unwrap_or(0.02),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// `eos_token_id` as config.json spells it: a number for one id, a list for several,
    /// `None` for none.
    pub fn eos_json(&self) -> Option<Json> {
        match self.eos_token_id.as_slice() {
            [] => None,
            [one] => Some(json!(one)),
            many => Some(json!(many)),
        }
    }

    /// Checks the sizes fit together; errors name the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (k, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ] {
            if v == 0 {
                bail!("`{k}` must be at least 1");
            }
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            bail!("`num_key_value_heads` ({}) must divide `num_attention_heads` ({})", self.num_key_value_heads, self.num_attention_heads);
        }
        if !self.head_dim.is_multiple_of(2) {
            bail!("`head_dim` ({}) must be even for rotary embeddings", self.head_dim);
        }
        // NaN fails these too.
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
            bail!("`rope_theta` must be positive");
        }
        if self.rms_norm_eps.is_nan() || self.rms_norm_eps <= 0.0 {
            bail!("`rms_norm_eps` must be positive");
        }
        if self.vocab_size >= u32::MAX as usize {
            bail!("`vocab_size` {} is too large", self.vocab_size);
        }
        Ok(())
    }

    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// Parameters outside the embedding table (`lm_head` included, also when tied), the `N` of
    /// the 6·N FLOPs-per-token rule.
    pub fn non_embedding_params(&self) -> usize {
        let (d, i) = (self.hidden_size, self.intermediate_size);
        let layer = 2 * d + d * self.q_dim() + 2 * d * self.kv_dim() + self.q_dim() * d + 3 * d * i;
        self.num_hidden_layers * layer + d + self.vocab_size * d
    }

    /// Training FLOPs per token as PaLM and llm.c count them: 6·N plus attention's
    /// 12·L·heads·head_dim·T for a context of `seq` tokens.
    pub fn train_flops_per_token(&self, seq: usize) -> f64 {
        6.0 * self.non_embedding_params() as f64 + 12.0 * (self.num_hidden_layers * self.q_dim() * seq) as f64
    }

    /// config.json for this model, as transformers writes it for `LlamaForCausalLM`, loadable by
    /// transformers 4.x and 5.x. `base` (the config this model was read from) keeps its other
    /// keys (token ids, `transformers_version`, ...).
    pub fn to_json(&self, base: Option<&Json>, dtype_name: &str) -> Json {
        let mut o: Map<String, Json> = base.and_then(Json::as_object).cloned().unwrap_or_default();
        let mut set = |k: &str, v: Json| {
            o.insert(k.to_string(), v);
        };
        set("architectures", json!(["LlamaForCausalLM"]));
        set("model_type", json!("llama"));
        set("vocab_size", json!(self.vocab_size));
        set("hidden_size", json!(self.hidden_size));
        set("intermediate_size", json!(self.intermediate_size));
        set("num_hidden_layers", json!(self.num_hidden_layers));
        set("num_attention_heads", json!(self.num_attention_heads));
        set("num_key_value_heads", json!(self.num_key_value_heads));
        set("head_dim", json!(self.head_dim));
        set("hidden_act", json!("silu"));
        set("max_position_embeddings", json!(self.max_position_embeddings));
        set("rms_norm_eps", json!(self.rms_norm_eps));
        set("rope_theta", json!(self.rope_theta));
        set("rope_scaling", Json::Null);
        set("attention_bias", json!(false));
        set("attention_dropout", json!(0.0));
        set("mlp_bias", json!(false));
        set("tie_word_embeddings", json!(self.tie_word_embeddings));
        set("initializer_range", json!(self.initializer_range));
        set("use_cache", json!(true));
        set("torch_dtype", json!(dtype_name));
        if let Some(b) = self.bos_token_id {
            set("bos_token_id", json!(b));
        }
        if let Some(e) = self.eos_json() {
            set("eos_token_id", e);
        }
        // transformers 5.x's spelling; 4.x ignores it. Both name the same theta.
        o.remove("rope_parameters");
        o.remove("dtype");
        o.remove("sliding_window");
        Json::Object(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Json {
        json!({"architectures": ["LlamaForCausalLM"], "vocab_size": 97, "hidden_size": 32, "intermediate_size": 64,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0})
    }

    #[test]
    fn reads_both_transformers_spellings() {
        let c = LlamaConfig::from_json(&base()).unwrap();
        assert_eq!((c.head_dim, c.num_key_value_heads, c.rope_theta), (8, 2, 10000.0));
        let mut v5 = base();
        v5.as_object_mut().unwrap().remove("rope_theta");
        v5["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 500000.0});
        v5["dtype"] = json!("bfloat16");
        assert_eq!(LlamaConfig::from_json(&v5).unwrap().rope_theta, 500000.0);
        // Round trip through what we write.
        let written = c.to_json(Some(&v5), "float32");
        assert_eq!(LlamaConfig::from_json(&written).unwrap(), c);
        assert!(written.get("rope_parameters").is_none());
    }

    #[test]
    fn every_eos_id_of_a_list_survives_the_round_trip() {
        // Llama 3 Instruct's config lists three: end of text, end of message, end of turn.
        let mut j = base();
        j["eos_token_id"] = json!([91, 94, 96]);
        let c = LlamaConfig::from_json(&j).unwrap();
        assert_eq!(c.eos_token_id, vec![91, 94, 96]);
        assert_eq!(c.to_json(Some(&j), "float32")["eos_token_id"], json!([91, 94, 96]));
        // One id is written as a number, none as no field, as transformers writes them.
        j["eos_token_id"] = json!(95);
        let one = LlamaConfig::from_json(&j).unwrap();
        assert_eq!((one.eos_token_id.clone(), one.to_json(None, "float32")["eos_token_id"].clone()), (vec![95], json!(95)));
        let none = LlamaConfig::from_json(&base()).unwrap();
        assert!(none.eos_token_id.is_empty() && none.to_json(None, "float32").get("eos_token_id").is_none());
        // A bad entry names the field.
        j["eos_token_id"] = json!([91, "end"]);
        let e = LlamaConfig::from_json(&j).unwrap_err().to_string();
        assert!(e.contains("`eos_token_id`") && e.contains("list"), "{e}");
    }

    #[test]
    fn unsupported_fields_are_named() {
        for (k, v, want) in [
            ("architectures", json!(["Qwen2ForCausalLM"]), "`architectures`"),
            ("rope_scaling", json!({"type": "linear", "factor": 2.0}), "`rope_scaling`"),
            ("attention_bias", json!(true), "`attention_bias`"),
            ("hidden_act", json!("gelu"), "`hidden_act`"),
            ("num_key_value_heads", json!(3), "`num_key_value_heads`"),
            ("hidden_size", json!("wide"), "`hidden_size`"),
            ("rope_theta", json!(0.0), "`rope_theta`"),
            ("rms_norm_eps", json!(-1e-5), "`rms_norm_eps`"),
        ] {
            let mut j = base();
            j[k] = v;
            let e = LlamaConfig::from_json(&j).unwrap_err().to_string();
            assert!(e.contains(want), "{k}: {e}");
        }
    }
}
