//! Machine resources (SPEC section 6), pure: what a card needs against what `pas.yaml`
//! declares and what assigned cards hold. A capacity left unset is not managed.

use crate::card::Resources;
use crate::config::Capacity;

/// One resource: its name, what the card needs, the capacity (if managed), what is used.
fn each(
    need: &Resources,
    cap: &Capacity,
    used: &Resources,
) -> [(&'static str, f64, Option<f64>, f64); 4] {
    [
        ("cpu", need.cpu, cap.cpu, used.cpu),
        (
            "mem_mb",
            need.mem_mb as f64,
            cap.mem_mb.map(|v| v as f64),
            used.mem_mb as f64,
        ),
        (
            "gpu",
            need.gpu as f64,
            cap.gpu.map(|v| v as f64),
            used.gpu as f64,
        ),
        (
            "gpu_mem_mb",
            need.gpu_mem_mb as f64,
            cap.gpu_mem_mb.map(|v| v as f64),
            used.gpu_mem_mb as f64,
        ),
    ]
}

/// Why a card can never run here (it needs more than the whole capacity), if so.
pub fn never_fits(need: &Resources, cap: &Capacity) -> Option<String> {
    let over: Vec<String> = each(need, cap, &Resources::default())
        .into_iter()
        .filter_map(|(name, n, c, _)| {
            c.filter(|c| n > *c)
                .map(|c| format!("{n} {name} (capacity {c})"))
        })
        .collect();
    (!over.is_empty()).then(|| format!("needs more than this machine has: {}", over.join(", ")))
}

/// Why a card must wait for resources held by assigned cards, if it must.
pub fn wait_reason(need: &Resources, cap: &Capacity, used: &Resources) -> Option<String> {
    let short: Vec<String> = each(need, cap, used)
        .into_iter()
        .filter_map(|(name, n, c, u)| {
            let free = (c? - u).max(0.0);
            (n > free).then(|| format!("needs {n} {name}, {free} free"))
        })
        .collect();
    (!short.is_empty()).then(|| short.join("; "))
}

/// Adds what a card holds to `used`.
pub fn reserve(used: &mut Resources, need: &Resources) {
    // Saturating: each amount is range-checked when the card is read, but a sum of many
    // must still never wrap.
    used.cpu += need.cpu;
    used.mem_mb = used.mem_mb.saturating_add(need.mem_mb);
    used.gpu = used.gpu.saturating_add(need.gpu);
    used.gpu_mem_mb = used.gpu_mem_mb.saturating_add(need.gpu_mem_mb);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap() -> Capacity {
        Capacity {
            cpu: Some(8.0),
            mem_mb: Some(1000),
            gpu: None,
            gpu_mem_mb: None,
        }
    }

    #[test]
    fn over_capacity_never_fits_and_says_why() {
        let need = Resources {
            cpu: 16.0,
            ..Default::default()
        };
        assert_eq!(
            never_fits(&need, &cap()).as_deref(),
            Some("needs more than this machine has: 16 cpu (capacity 8)")
        );
        // Unmanaged resources never block.
        let gpu = Resources {
            gpu: 4,
            ..Default::default()
        };
        assert_eq!(never_fits(&gpu, &cap()), None);
    }

    #[test]
    fn waits_while_held_and_fits_once_released() {
        let need = Resources {
            cpu: 8.0,
            mem_mb: 10,
            ..Default::default()
        };
        let mut used = Resources::default();
        assert_eq!(wait_reason(&need, &cap(), &used), None);
        reserve(
            &mut used,
            &Resources {
                cpu: 6.0,
                ..Default::default()
            },
        );
        assert_eq!(
            wait_reason(&need, &cap(), &used).as_deref(),
            Some("needs 8 cpu, 2 free")
        );
    }
}
