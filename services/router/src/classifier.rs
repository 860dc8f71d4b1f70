//! The Content Analyzer role: a multinomial naive Bayes classifier over words, trained at start
//! from labelled examples (JSON lines `{"category": "...", "text": "..."}`), with Laplace
//! smoothing. Small and dependency-free on purpose: the model is a few counts, training takes
//! milliseconds, and the same examples always give the same model (a replayed decision is the
//! same decision). [`evaluate`] reports accuracy on a held-out fifth of the examples.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("cannot read classifier examples {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("classifier examples {path}, line {line}: {message}")]
    Bad { path: String, line: usize, message: String },
    #[error("classifier examples {path}: {message}")]
    TooFew { path: String, message: String },
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Example {
    pub category: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct NaiveBayes {
    /// Per category: log prior, word counts, total words.
    categories: BTreeMap<String, CategoryModel>,
    vocabulary: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
struct CategoryModel {
    documents: usize,
    words: BTreeMap<String, usize>,
    total_words: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub category: String,
    /// Posterior probability of `category` under the model, 0..=1.
    pub confidence: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub trained_on: usize,
    pub held_out: usize,
    pub correct: usize,
    pub accuracy: f64,
}

/// Words that say nothing about a category: they only add noise to small training sets.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "before", "but", "by", "can", "could", "did", "do",
    "does", "for", "from", "get", "got", "has", "have", "how", "if", "in", "into", "is", "it", "its", "me",
    "my", "no", "not", "of", "on", "or", "our", "please", "so", "than", "that", "the", "their", "them",
    "then", "there", "this", "to", "up", "us", "was", "we", "what", "when", "where", "which", "who", "why",
    "will", "with", "would", "you", "your", "am", "hi", "hello", "thanks", "thank", "dear", "regards",
    "after", "all", "still", "every", "again", "one", "two",
];

/// Lower-cased words of two or more letters or digits, without stop words, with common
/// English suffixes cut (a crude stemmer: "charged", "charges" and "charging" become "charg").
pub fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| stem(&w))
}

fn stem(word: &str) -> String {
    for suffix in ["ing", "ed", "es", "s", "e", "ly"] {
        if let Some(stem) = word.strip_suffix(suffix)
            && stem.chars().count() >= 3
        {
            return stem.to_owned();
        }
    }
    word.to_owned()
}

pub fn load_examples(path: &Path) -> Result<Vec<Example>, ClassifierError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ClassifierError::Read { path: shown.clone(), source })?;
    parse_examples(&text, &shown)
}

/// `source` names where `text` came from, for errors.
pub fn parse_examples(text: &str, source: &str) -> Result<Vec<Example>, ClassifierError> {
    let shown = source.to_owned();
    let mut examples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let example: Example = serde_json::from_str(line).map_err(|e| ClassifierError::Bad {
            path: shown.clone(),
            line: n + 1,
            message: e.to_string(),
        })?;
        if example.category.trim().is_empty() {
            return Err(ClassifierError::Bad { path: shown, line: n + 1, message: "empty category".into() });
        }
        examples.push(example);
    }
    let categories: BTreeSet<&str> = examples.iter().map(|e| e.category.as_str()).collect();
    if categories.len() < 2 {
        return Err(ClassifierError::TooFew {
            path: shown,
            message: format!("{} examples in {} categories; at least two categories are needed", examples.len(), categories.len()),
        });
    }
    Ok(examples)
}

impl NaiveBayes {
    pub fn train(examples: &[Example]) -> Self {
        let mut categories: BTreeMap<String, CategoryModel> = BTreeMap::new();
        let mut vocabulary = BTreeSet::new();
        for e in examples {
            let model = categories.entry(e.category.clone()).or_default();
            model.documents += 1;
            for t in tokens(&e.text) {
                *model.words.entry(t.clone()).or_default() += 1;
                model.total_words += 1;
                vocabulary.insert(t);
            }
        }
        Self { categories, vocabulary }
    }

    pub fn categories(&self) -> impl Iterator<Item = &str> {
        self.categories.keys().map(String::as_str)
    }

    /// The most probable category and its posterior probability; None without a model or
    /// without a single known word in `text`.
    pub fn predict(&self, text: &str) -> Option<Prediction> {
        let words: Vec<String> = tokens(text).filter(|t| self.vocabulary.contains(t)).collect();
        if words.is_empty() {
            return None;
        }
        let documents: usize = self.categories.values().map(|c| c.documents).sum();
        let v = self.vocabulary.len() as f64;
        let scores: Vec<(&String, f64)> = self
            .categories
            .iter()
            .map(|(name, c)| {
                let prior = (c.documents as f64 / documents as f64).ln();
                let denominator = c.total_words as f64 + v;
                let likelihood: f64 = words
                    .iter()
                    .map(|w| ((c.words.get(w).copied().unwrap_or(0) as f64 + 1.0) / denominator).ln())
                    .sum();
                (name, prior + likelihood)
            })
            .collect();
        let best = scores.iter().copied().fold(None::<(&String, f64)>, |best, (n, s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((n, s)),
        })?;
        // Posterior by log-sum-exp, stable for long texts.
        let total: f64 = scores.iter().map(|(_, s)| (s - best.1).exp()).sum();
        Some(Prediction {
            category: best.0.clone(),
            confidence: 1.0 / total,
        })
    }
}

/// Trains on four fifths of `examples` and measures accuracy on the rest (every fifth, so the
/// split is the same on every run).
pub fn evaluate(examples: &[Example]) -> Evaluation {
    let held: Vec<&Example> = examples.iter().skip(4).step_by(5).collect();
    let train: Vec<Example> =
        examples.iter().enumerate().filter(|(i, _)| i % 5 != 4).map(|(_, e)| e.clone()).collect();
    let model = NaiveBayes::train(&train);
    let correct = held
        .iter()
        .filter(|e| model.predict(&e.text).is_some_and(|p| p.category == e.category))
        .count();
    Evaluation {
        trained_on: train.len(),
        held_out: held.len(),
        correct,
        accuracy: if held.is_empty() { 0.0 } else { correct as f64 / held.len() as f64 },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ex(category: &str, text: &str) -> Example {
        Example { category: category.into(), text: text.into() }
    }

    #[test]
    fn learns_words_of_each_category() {
        let model = NaiveBayes::train(&[
            ex("billing", "invoice charged twice refund payment"),
            ex("billing", "wrong amount on my invoice"),
            ex("delivery", "parcel not delivered tracking number"),
            ex("delivery", "where is my parcel courier late"),
        ]);
        let p = model.predict("I was charged twice on the invoice").unwrap();
        assert_eq!(p.category, "billing");
        assert!(p.confidence > 0.5 && p.confidence <= 1.0, "{p:?}");
        assert_eq!(model.predict("parcel tracking?").unwrap().category, "delivery");
        assert_eq!(model.predict("zzz qqq"), None, "no known word: no guess");
    }

    #[test]
    fn the_shipped_examples_classify_held_out_mail_well() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/workflow/classifier-examples.jsonl");
        let examples = load_examples(&path).unwrap();
        let evaluation = evaluate(&examples);
        eprintln!("naive Bayes on {}: {evaluation:?}", path.display());
        assert!(evaluation.held_out >= 15, "{evaluation:?}");
        // Far above chance (one in five categories): the model learned something.
        assert!(evaluation.accuracy >= 0.6, "{evaluation:?}");
    }
}
