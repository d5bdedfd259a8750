//! The pool's worker: which pending frames run together in one step, results handed back.

use super::step::same_error;
use super::*;

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worker: waits for a full batch or the oldest frame's deadline, runs the step.
    pub(super) fn work(&self) {
        loop {
            let mut state = self.lock();
            let batch = loop {
                if state.shutdown {
                    return;
                }
                let ready: Vec<(Instant, StreamId)> = state
                    .streams
                    .iter()
                    .filter_map(|(id, s)| s.queue.front().map(|q| (q.since, *id)))
                    .collect();
                let oldest = ready.iter().map(|r| r.0).min();
                // A full batch runs at once; so does one with every open stream in it, since
                // waiting could not add to it.
                let full = ready.len() >= self.options.max_batch.min(state.streams.len());
                match oldest {
                    Some(t) if full || t.elapsed() >= self.options.max_wait => {
                        break self.take(&mut state, ready);
                    }
                    Some(t) => {
                        let left = self.options.max_wait.saturating_sub(t.elapsed());
                        state = self
                            .wake
                            .wait_timeout(state, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    None => {
                        state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                    }
                }
            };
            drop(state);
            if batch.is_empty() {
                continue;
            }
            let n = batch.len();
            let started = Instant::now();
            let result = self.engine.step(&batch);
            let mut state = self.lock();
            match result {
                Ok((outputs, states)) => {
                    state.stats.frames += n;
                    state.stats.steps += 1;
                    for ((item, outs), next) in batch.into_iter().zip(outputs).zip(states) {
                        if let Some(slot) = state.streams.get_mut(&item.id) {
                            slot.states = Some(next);
                            if slot.first_frame.is_none() {
                                slot.first_frame = Some(self.engine.frame_key(&item.queued.frame));
                            }
                        }
                        let _ = item.queued.reply.send(Ok(Frame {
                            outputs: outs,
                            queued: started.duration_since(item.queued.since),
                            batch: n,
                        }));
                    }
                }
                Err(e) => {
                    // The frames of one step share their shapes: a failure is theirs alone,
                    // and their streams stay where they were.
                    for item in batch {
                        let _ = item.queued.reply.send(Err(same_error(&e)));
                    }
                }
            }
        }
    }

    /// The head frames of the streams that waited longest, up to a batch, whose frames have
    /// the same shapes; each stream's states go with its frame.
    pub(super) fn take(
        &self,
        state: &mut PoolState,
        mut ready: Vec<(Instant, StreamId)>,
    ) -> Vec<Item> {
        ready.sort();
        let mut key = None;
        let mut batch = vec![];
        for (_, id) in ready {
            if batch.len() == self.options.max_batch {
                break;
            }
            let slot = state.streams.get_mut(&id).unwrap();
            // A frame pushed before its stream's first step ran may disagree with it.
            if let Some(first) = &slot.first_frame {
                if let Err(e) = self.engine.check_same_frame(first, &slot.queue[0].frame) {
                    let queued = slot.queue.pop_front().unwrap();
                    let _ = queued.reply.send(Err(e));
                    continue;
                }
            }
            let this = self.engine.batch_key(slot);
            if *key.get_or_insert_with(|| this.clone()) != this {
                continue;
            }
            let queued = slot.queue.pop_front().unwrap();
            batch.push(Item {
                id,
                queued,
                start: slot.start.clone(),
                states: slot.states.clone(),
            });
        }
        batch
    }
}
