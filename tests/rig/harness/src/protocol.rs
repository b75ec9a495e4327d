//! The results protocol: what L1's /init writes on its second serial port (ttyS1), one line
//! each (tests/rig/init/l1-init):
//!
//! ```text
//! @@RIG START uptime=SECS          L1 is ready (its uptime then)
//! @@RIG BEGIN NAME                 a scenario starts; its output follows
//! @@RIG TIMEOUT NAME after N s     it ran out of time (kept in its log)
//! @@RIG END NAME rc=RC secs=SECS   it ended with exit status RC
//! @@RIG UNPLUG ID                  a scenario asks the host to unplug QEMU device ID
//! @@RIG DONE uptime=SECS           every scenario ended
//! @@RIG SATAVM rc=RC               (satavm mode) satavm's exit status
//! @@RIG STALLED                    (written by the host) QEMU stopped using CPU
//! ```

/// One scenario that has begun.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioResult {
    pub name: String,
    /// Its exit status and seconds in L1, once its END line came.
    pub end: Option<(i32, f64)>,
    /// Everything it printed (and its TIMEOUT line), CRs removed.
    pub log: String,
}

/// What the results port said so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Results {
    pub start_uptime: Option<f64>,
    pub done_uptime: Option<f64>,
    pub scenarios: Vec<ScenarioResult>,
    /// Devices the scenarios asked to unplug, in order.
    pub unplugs: Vec<String>,
    pub satavm_rc: Option<i32>,
}

impl Results {
    /// Parses the whole results text (it only grows: parse it again when it did).
    pub fn parse(text: &str) -> Results {
        let mut results = Results::default();
        let mut current: Option<usize> = None;
        for raw in text.lines() {
            let line = raw.trim_end_matches('\r');
            let Some(rest) = line.strip_prefix("@@RIG ") else {
                if let Some(i) = current {
                    results.scenarios[i].log.push_str(line);
                    results.scenarios[i].log.push('\n');
                }
                continue;
            };
            let mut words = rest.split_whitespace();
            match words.next() {
                Some("START") => results.start_uptime = words.next().and_then(uptime),
                Some("DONE") => results.done_uptime = words.next().and_then(uptime),
                Some("BEGIN") => {
                    let name = words.next().unwrap_or_default().to_string();
                    results.scenarios.push(ScenarioResult {
                        name,
                        end: None,
                        log: String::new(),
                    });
                    current = Some(results.scenarios.len() - 1);
                }
                Some("END") => {
                    let name = words.next().unwrap_or_default();
                    let rc = words.next().and_then(|w| field(w, "rc="));
                    let secs = words.next().and_then(|w| field(w, "secs="));
                    if let Some(s) = results.scenarios.iter_mut().rev().find(|s| s.name == name) {
                        s.end = Some((rc.unwrap_or(-1), secs.unwrap_or(0.0)));
                    }
                    current = None;
                }
                Some("TIMEOUT") => {
                    if let Some(i) = current {
                        results.scenarios[i].log.push_str(line);
                        results.scenarios[i].log.push('\n');
                    }
                }
                Some("UNPLUG") => {
                    if let Some(id) = words.next() {
                        results.unplugs.push(id.to_string());
                    }
                }
                Some("SATAVM") => results.satavm_rc = words.next().and_then(|w| field(w, "rc=")),
                _ => {}
            }
        }
        results
    }

    /// The scenarios that ended, in order.
    pub fn ended(&self) -> impl Iterator<Item = (&ScenarioResult, i32, f64)> {
        self.scenarios
            .iter()
            .filter_map(|s| s.end.map(|(rc, secs)| (s, rc, secs)))
    }
}

fn uptime(word: &str) -> Option<f64> {
    field(word, "uptime=")
}

fn field<T: std::str::FromStr>(word: &str, key: &str) -> Option<T> {
    word.strip_prefix(key)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "noise before\r\n@@RIG START uptime=7.25\r\n@@RIG BEGIN a\r\nok: one\r\n\
        @@RIG END a rc=0 secs=1.5\r\n@@RIG BEGIN b\r\nhalf\r\n@@RIG UNPLUG ahci-vanish\r\n\
        @@RIG TIMEOUT b after 300 s\r\n@@RIG END b rc=124 secs=300.0\r\n@@RIG DONE uptime=310.5\r\n";

    #[test]
    fn parses_scenarios_requests_and_times() {
        let r = Results::parse(SAMPLE);
        assert_eq!(r.start_uptime, Some(7.25));
        assert_eq!(r.done_uptime, Some(310.5));
        assert_eq!(r.unplugs, vec!["ahci-vanish".to_string()]);
        let ended: Vec<_> = r
            .ended()
            .map(|(s, rc, secs)| (s.name.as_str(), rc, secs))
            .collect();
        assert_eq!(ended, vec![("a", 0, 1.5), ("b", 124, 300.0)]);
        assert_eq!(r.scenarios[0].log, "ok: one\n");
        assert_eq!(r.scenarios[1].log, "half\n@@RIG TIMEOUT b after 300 s\n");
    }

    #[test]
    fn an_unfinished_scenario_has_no_end() {
        let r = Results::parse("@@RIG START uptime=1\n@@RIG BEGIN a\npartial line");
        assert_eq!(r.scenarios.len(), 1);
        assert_eq!(r.scenarios[0].end, None);
        assert_eq!(r.scenarios[0].log, "partial line\n");
        assert_eq!(r.done_uptime, None);
        assert_eq!(r.ended().count(), 0);
    }

    #[test]
    fn satavm_mode_status() {
        assert_eq!(Results::parse("@@RIG SATAVM rc=70\n").satavm_rc, Some(70));
        assert_eq!(Results::parse("@@RIG SATAVM rc=x\n").satavm_rc, None);
    }
}
