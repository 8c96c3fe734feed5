//! `Summary` protos for each kind of data TensorBoard shows: scalars, text, histograms, images
//! and the hparams plugin's session and experiment records.
//!
//! `tensorboard-rs` builds scalars and histograms only; text and hparams are plugin summaries
//! (a `Summary.Value` whose metadata names the plugin and carries its serialized plugin data),
//! built here from the protobuf types of `tensorboard-proto`.

use protobuf::well_known_types::Value as PbValue;
use protobuf::{Message, RepeatedField};
use tensorboard_proto::api::{DataType, Experiment, HParamInfo, MetricInfo, MetricName};
use tensorboard_proto::plugin_hparams::{HParamsPluginData, SessionStartInfo};
use tensorboard_proto::plugin_text::TextPluginData;
use tensorboard_proto::summary::{
    HistogramProto, Summary, SummaryMetadata, SummaryMetadata_PluginData, Summary_Image,
    Summary_Value,
};
use tensorboard_proto::tensor::TensorProto;
use tensorboard_proto::tensor_shape::{TensorShapeProto, TensorShapeProto_Dim};
use tensorboard_proto::types::DataType as TfDataType;

use super::{HParam, LogError};

/// Tag under which the hparams plugin looks for a run's hyperparameter values.
pub const HPARAMS_SESSION_START_TAG: &str = "_hparams_/session_start_info";
/// Tag under which the hparams plugin looks for the experiment (columns of the HPARAMS tab).
pub const HPARAMS_EXPERIMENT_TAG: &str = "_hparams_/experiment";

fn single(value: Summary_Value) -> Summary {
    let mut summary = Summary::new();
    summary.set_value(RepeatedField::from_vec(vec![value]));
    summary
}

fn plugin_metadata(plugin: &str, content: Vec<u8>) -> SummaryMetadata {
    let mut data = SummaryMetadata_PluginData::new();
    data.set_plugin_name(plugin.to_string());
    data.set_content(content);
    let mut meta = SummaryMetadata::new();
    meta.set_plugin_data(data);
    meta
}

fn encode<M: Message>(message: &M) -> Result<Vec<u8>, LogError> {
    message
        .write_to_bytes()
        .map_err(|e| LogError::Encode(e.to_string()))
}

/// A scalar. TensorBoard's `simple_value` is an f32; `metrics.jsonl` keeps the f64.
pub(crate) fn scalar(tag: &str, value: f64) -> Summary {
    let mut v = Summary_Value::new();
    v.set_tag(tag.to_string());
    v.set_simple_value(value as f32);
    single(v)
}

/// A text summary: a scalar `DT_STRING` tensor, rendered as markdown by the text plugin.
pub(crate) fn text(tag: &str, markdown: &str) -> Result<Summary, LogError> {
    let mut tensor = TensorProto::new();
    tensor.set_dtype(TfDataType::DT_STRING);
    tensor.set_tensor_shape(TensorShapeProto::new());
    tensor.set_string_val(RepeatedField::from_vec(vec![markdown.as_bytes().to_vec()]));
    let mut v = Summary_Value::new();
    v.set_tag(tag.to_string());
    v.set_metadata(plugin_metadata("text", encode(&TextPluginData::new())?));
    v.set_tensor(tensor);
    Ok(single(v))
}

/// What TensorBoard's image summary records about an encoded PNG, read from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PngHeader {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// TensorFlow's colorspace code: 1 grayscale, 2 grayscale + alpha, 3 RGB (also palette
    /// images), 4 RGBA.
    pub colorspace: i32,
}

impl PngHeader {
    /// Reads the size and colour type from the PNG signature and `IHDR` chunk of `png`;
    /// anything else is an error saying what is wrong.
    pub fn read(png: &[u8]) -> Result<PngHeader, LogError> {
        const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
        let bad = |why: &str| LogError::Image(format!("not a PNG image: {why}"));
        if png.len() < 33 || &png[..8] != SIGNATURE {
            return Err(bad("no PNG signature and header"));
        }
        if &png[12..16] != b"IHDR" {
            return Err(bad("the first chunk is not IHDR"));
        }
        let be32 = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
        let (width, height) = (be32(16), be32(20));
        if width == 0 || height == 0 || width > i32::MAX as u32 || height > i32::MAX as u32 {
            return Err(bad(&format!("size {width}x{height}")));
        }
        let colorspace = match png[25] {
            0 => 1,
            4 => 2,
            2 | 3 => 3,
            6 => 4,
            other => return Err(bad(&format!("colour type {other}"))),
        };
        Ok(PngHeader {
            width,
            height,
            colorspace,
        })
    }
}

/// An image summary of an encoded PNG (TensorBoard's IMAGES tab); size and colorspace from
/// its header.
pub(crate) fn image(tag: &str, png: &[u8]) -> Result<Summary, LogError> {
    let header = PngHeader::read(png)?;
    let mut image = Summary_Image::new();
    // Both fit: `PngHeader::read` refuses sizes above i32::MAX.
    image.set_width(header.width as i32);
    image.set_height(header.height as i32);
    image.set_colorspace(header.colorspace);
    image.set_encoded_image_string(png.to_vec());
    let mut v = Summary_Value::new();
    v.set_tag(tag.to_string());
    v.set_image(image);
    Ok(single(v))
}

/// Bucketed values, in the layout of TensorBoard's `HistogramProto`.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Smallest finite value (0 when there are none).
    pub min: f64,
    /// Largest finite value (0 when there are none).
    pub max: f64,
    /// Number of finite values.
    pub num: f64,
    /// Sum of the finite values.
    pub sum: f64,
    /// Sum of their squares.
    pub sum_squares: f64,
    /// Right edge of each bucket; the last one is `max`. Bucket `i` holds the values in
    /// `(bucket_limit[i-1], bucket_limit[i]]`, the first one starts at `min`.
    pub bucket_limit: Vec<f64>,
    /// Number of values in each bucket.
    pub bucket: Vec<f64>,
}

/// Number of equal-width buckets for values that are not small integers.
pub const HISTOGRAM_BUCKETS: usize = 30;
/// Integer-valued data spanning at most this many distinct values gets one bucket per integer.
const INTEGER_BUCKETS_MAX: f64 = 128.0;

impl Histogram {
    /// Buckets the finite entries of `values` (NaN and infinities are left out: TensorBoard
    /// cannot draw them; log a separate count if they matter).
    ///
    /// Integer-valued data over a small range (chain lengths, token counts) gets one bucket
    /// per integer so that TensorBoard shows exact counts; anything else gets
    /// [`HISTOGRAM_BUCKETS`] equal-width buckets between min and max.
    pub fn from_values(values: &[f64]) -> Histogram {
        let mut h = Histogram {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            num: 0.0,
            sum: 0.0,
            sum_squares: 0.0,
            bucket_limit: Vec::new(),
            bucket: Vec::new(),
        };
        let mut all_integers = true;
        for &v in values.iter().filter(|v| v.is_finite()) {
            h.min = h.min.min(v);
            h.max = h.max.max(v);
            h.num += 1.0;
            h.sum += v;
            h.sum_squares += v * v;
            all_integers &= v.fract() == 0.0;
        }
        if h.num == 0.0 {
            h.min = 0.0;
            h.max = 0.0;
            return h;
        }
        if h.min == h.max {
            h.bucket_limit.push(h.max);
            h.bucket.push(h.num);
            return h;
        }
        let (n, left, width) = if all_integers && h.max - h.min < INTEGER_BUCKETS_MAX {
            // Unit buckets centred on the integers: (k - 0.5, k + 0.5].
            ((h.max - h.min) as usize + 1, h.min - 0.5, 1.0)
        } else {
            (
                HISTOGRAM_BUCKETS,
                h.min,
                (h.max - h.min) / HISTOGRAM_BUCKETS as f64,
            )
        };
        h.bucket = vec![0.0; n];
        h.bucket_limit = (1..=n).map(|i| left + i as f64 * width).collect();
        h.bucket_limit[n - 1] = h.max;
        for &v in values.iter().filter(|v| v.is_finite()) {
            // Right-closed buckets: a value on an edge belongs to the bucket on its left.
            let pos = ((v - left) / width).ceil() as usize;
            let i = pos.saturating_sub(1).min(n - 1);
            h.bucket[i] += 1.0;
        }
        h
    }

    pub(crate) fn to_summary(&self, tag: &str) -> Summary {
        let mut proto = HistogramProto::new();
        proto.set_min(self.min);
        proto.set_max(self.max);
        proto.set_num(self.num);
        proto.set_sum(self.sum);
        proto.set_sum_squares(self.sum_squares);
        proto.set_bucket_limit(self.bucket_limit.clone());
        proto.set_bucket(self.bucket.clone());
        let mut v = Summary_Value::new();
        v.set_tag(tag.to_string());
        v.set_histo(proto);
        single(v)
    }
}

/// The empty float tensor the hparams plugin's own writer attaches: TensorBoard lists plugin
/// series through their tensors, so a value without one would be invisible to the plugin.
fn null_tensor() -> TensorProto {
    let mut dim = TensorShapeProto_Dim::new();
    dim.set_size(0);
    let mut shape = TensorShapeProto::new();
    shape.set_dim(RepeatedField::from_vec(vec![dim]));
    let mut tensor = TensorProto::new();
    tensor.set_dtype(TfDataType::DT_FLOAT);
    tensor.set_tensor_shape(shape);
    tensor
}

fn hparams_value(tag: &str, data: &HParamsPluginData) -> Result<Summary, LogError> {
    let mut v = Summary_Value::new();
    v.set_tag(tag.to_string());
    v.set_metadata(plugin_metadata("hparams", encode(data)?));
    v.set_tensor(null_tensor());
    Ok(single(v))
}

fn pb_value(h: &HParam) -> PbValue {
    let mut v = PbValue::new();
    match h {
        HParam::Num(x) => v.set_number_value(*x),
        HParam::Str(s) => v.set_string_value(s.clone()),
        HParam::Bool(b) => v.set_bool_value(*b),
    }
    v
}

/// The run's hyperparameter values (`SessionStartInfo`).
pub(crate) fn hparams_session_start(
    hparams: &[(String, HParam)],
    start_time_secs: f64,
) -> Result<Summary, LogError> {
    let mut info = SessionStartInfo::new();
    for (name, value) in hparams {
        info.mut_hparams().insert(name.clone(), pb_value(value));
    }
    info.set_start_time_secs(start_time_secs);
    let mut data = HParamsPluginData::new();
    data.set_version(0);
    data.set_session_start_info(info);
    hparams_value(HPARAMS_SESSION_START_TAG, &data)
}

/// The experiment: which hparams and which metric tags the HPARAMS tab shows as columns.
pub(crate) fn hparams_experiment(
    hparams: &[(String, HParam)],
    metric_tags: &[String],
    time_created_secs: f64,
) -> Result<Summary, LogError> {
    let mut exp = Experiment::new();
    exp.set_time_created_secs(time_created_secs);
    for (name, value) in hparams {
        let mut info = HParamInfo::new();
        info.set_name(name.clone());
        info.set_field_type(match value {
            HParam::Num(_) => DataType::DATA_TYPE_FLOAT64,
            HParam::Str(_) => DataType::DATA_TYPE_STRING,
            HParam::Bool(_) => DataType::DATA_TYPE_BOOL,
        });
        exp.mut_hparam_infos().push(info);
    }
    for tag in metric_tags {
        let mut name = MetricName::new();
        name.set_tag(tag.clone());
        let mut info = MetricInfo::new();
        info.set_name(name);
        exp.mut_metric_infos().push(info);
    }
    let mut data = HParamsPluginData::new();
    data.set_version(0);
    data.set_experiment(exp);
    hparams_value(HPARAMS_EXPERIMENT_TAG, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_histogram_has_one_bucket_per_value() {
        let h = Histogram::from_values(&[3.0, 4.0, 4.0, 6.0, f64::NAN]);
        assert_eq!(h.num, 4.0);
        assert_eq!((h.min, h.max), (3.0, 6.0));
        assert_eq!(h.bucket, vec![1.0, 2.0, 0.0, 1.0]);
        assert_eq!(h.bucket_limit, vec![3.5, 4.5, 5.5, 6.0]);
        assert_eq!(h.sum, 17.0);
        assert_eq!(h.sum_squares, 9.0 + 16.0 + 16.0 + 36.0);
    }

    #[test]
    fn real_histogram_covers_every_value_once() {
        let values: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin() * 2.5).collect();
        let h = Histogram::from_values(&values);
        assert_eq!(h.bucket.len(), HISTOGRAM_BUCKETS);
        assert_eq!(h.bucket.iter().sum::<f64>(), 1000.0);
        assert_eq!(*h.bucket_limit.last().unwrap(), h.max);
        assert!(h.bucket_limit.windows(2).all(|w| w[0] < w[1]));
        // Each value lies in its bucket's (left, right] range (the first bucket includes min).
        for &v in &values {
            let i = h.bucket_limit.iter().position(|&r| v <= r).unwrap();
            let left = if i == 0 { h.min } else { h.bucket_limit[i - 1] };
            assert!(v >= left);
        }
    }

    #[test]
    fn constant_and_empty_histograms() {
        let h = Histogram::from_values(&[2.5; 7]);
        assert_eq!(h.bucket, vec![7.0]);
        assert_eq!(h.bucket_limit, vec![2.5]);
        let h = Histogram::from_values(&[f64::INFINITY]);
        assert_eq!(h.num, 0.0);
        assert!(h.bucket.is_empty());
    }

    #[test]
    fn hparams_content_round_trips_through_protobuf() {
        let hp = vec![
            ("lr".to_string(), HParam::Num(3e-4)),
            ("algo".to_string(), HParam::Str("cot".into())),
            ("bias".to_string(), HParam::Bool(false)),
        ];
        let summary = hparams_session_start(&hp, 12.0).unwrap();
        let value = &summary.get_value()[0];
        assert_eq!(value.get_tag(), HPARAMS_SESSION_START_TAG);
        let plugin = value.get_metadata().get_plugin_data();
        assert_eq!(plugin.get_plugin_name(), "hparams");
        let data = HParamsPluginData::parse_from_bytes(plugin.get_content()).unwrap();
        let info = data.get_session_start_info();
        assert_eq!(info.get_hparams()["lr"].get_number_value(), 3e-4);
        assert_eq!(info.get_hparams()["algo"].get_string_value(), "cot");
        assert!(info.get_hparams().contains_key("bias"));
        assert_eq!(info.get_start_time_secs(), 12.0);
    }
}
