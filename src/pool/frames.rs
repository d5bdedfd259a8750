//! A frame's inputs checked against the pool's and keyed by shape (which step graph runs it).

use super::*;

impl Engine {
    pub(super) fn infos(&self, role: Role) -> Vec<IoInfo> {
        self.model
            .inputs()
            .iter()
            .zip(&self.roles)
            .filter(|(_, r)| **r == role)
            .map(|(i, _)| i.clone())
            .collect()
    }

    pub(super) fn axis_of(&self, name: &str) -> Option<usize> {
        let ix = self.model.inputs().iter().position(|i| i.name == name)?;
        self.batch_axes[ix]
    }

    /// The inputs of a role as one stream gives them: batch axis of size 1.
    pub(super) fn batch_one_infos(&self, role: Role) -> Vec<IoInfo> {
        self.infos(role)
            .into_iter()
            .map(|mut info| {
                if let Some(axis) = self.axis_of(&info.name) {
                    info.shape[axis] = Dim::Fixed(1);
                }
                if let Kind::Stream { time_axes, .. } = &self.kind {
                    let ix = self.model.inputs().iter().position(|i| i.name == info.name);
                    if let Some(axis) = ix.and_then(|ix| time_axes[ix]) {
                        info.shape[axis] = Dim::Symbol(crate::stream::STREAM_SEQ.into());
                    }
                }
                info
            })
            .collect()
    }

    /// Checks a pushed frame against what the pool takes.
    pub(super) fn check_frame(&self, frame: &[Tensor]) -> Result<()> {
        let infos = self.batch_one_infos(Role::Pushed);
        check_inputs(&infos, frame).map_err(|e| match e {
            Error::Input { .. } if frame.len() != infos.len() => {
                let per_stream = self.infos(Role::PerStream);
                let given = if per_stream.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} {} given once per stream (with open_from) and then carried by \
                         the pool",
                        per_stream
                            .iter()
                            .map(|i| format!("'{}'", i.name))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if per_stream.len() == 1 { "is" } else { "are" }
                    )
                };
                Error::Input {
                    name: infos
                        .first()
                        .map(|i| i.name.clone())
                        .unwrap_or_else(|| "frame".into()),
                    message: format!(
                        "a frame of this pool holds {}, found {}{given}",
                        IoInfo::counted(&infos, "tensor"),
                        frame.len()
                    ),
                }
            }
            e => e,
        })
    }

    /// The model input index of each pushed tensor, and its time axis (streaming models).
    pub(super) fn pushed_axes(&self) -> Vec<(usize, Option<usize>)> {
        (0..self.roles.len())
            .filter(|&ix| self.roles[ix] == Role::Pushed)
            .map(|ix| {
                let time = match &self.kind {
                    Kind::Stream { time_axes } => time_axes[ix],
                    Kind::Feedback { .. } => None,
                };
                (ix, time)
            })
            .collect()
    }

    /// A frame's shapes, a streaming model's time axis set to 0.
    pub(super) fn frame_key(&self, frame: &[Tensor]) -> Vec<Vec<usize>> {
        frame
            .iter()
            .zip(self.pushed_axes())
            .map(|(t, (_, time))| {
                let mut shape = t.shape().to_vec();
                if let Some(axis) = time {
                    shape[axis] = 0;
                }
                shape
            })
            .collect()
    }

    /// A frame's shapes as messages print them (the time axis as `time`).
    pub(super) fn frame_shapes_text(&self, key: &[Vec<usize>]) -> String {
        key.iter()
            .zip(self.pushed_axes())
            .map(|(shape, (_, time))| {
                shape_string(shape.iter().enumerate().map(|(a, d)| {
                    if Some(a) == time {
                        "time".to_string()
                    } else {
                        d.to_string()
                    }
                }))
            })
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// Refuses a frame of a streaming model's stream whose shape (time axis aside) is not its
    /// first frame's: the stream's carried states have that shape.
    pub(super) fn check_same_frame(&self, first: &[Vec<usize>], frame: &[Tensor]) -> Result<()> {
        if matches!(self.kind, Kind::Feedback { .. }) {
            return Ok(());
        }
        let key = self.frame_key(frame);
        match (0..key.len()).find(|&k| key[k] != first[k]) {
            None => Ok(()),
            Some(k) => Err(Error::Input {
                name: self.model.inputs()[self.pushed_axes()[k].0].name.clone(),
                message: format!(
                    "shape {}, but this stream's first frame had {}: a stream keeps its batch \
                     and feature sizes (open another stream for frames of this shape)",
                    shape_string(frame[k].shape()),
                    self.frame_shapes_text(&first[k..k + 1]),
                ),
            }),
        }
    }

    /// The shapes of a stream's per-stream values as its next step takes them: for a
    /// fed-back state, the state carried from its last frame once there is one.
    pub(super) fn per_stream_shapes(
        &self,
        start: &[Tensor],
        states: Option<&Vec<TValue>>,
    ) -> ShapeKey {
        let per_stream = (0..self.roles.len()).filter(|&ix| self.roles[ix] == Role::PerStream);
        per_stream
            .zip(start)
            .map(|(ix, t)| match (&self.kind, states) {
                (Kind::Feedback { pairs }, Some(states)) => {
                    let k = pairs.iter().position(|p| p.0 == ix).unwrap();
                    states[k].shape().to_vec()
                }
                _ => t.shape().to_vec(),
            })
            .collect()
    }

    /// What the frames of one step must share: their shapes (time axis included) and their
    /// streams' per-stream shapes.
    pub(super) fn batch_key(&self, slot: &Slot) -> ShapeKey {
        let mut key: ShapeKey = slot.queue[0]
            .frame
            .iter()
            .map(|t| t.shape().to_vec())
            .collect();
        key.extend(self.per_stream_shapes(&slot.start, slot.states.as_ref()));
        key
    }
}
