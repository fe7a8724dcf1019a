//! Shares in Portal's formats built from numbers, and a deterministic byte source.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::json;
use sha3::{Digest as _, Keccak256};

/// The numbers of one wallet's two shares, in decimal.
pub(crate) struct Numbers<'a> {
    pub(crate) pub_x: &'a str,
    pub(crate) pub_y: &'a str,
    pub(crate) s1: &'a str,
    pub(crate) s2: &'a str,
    pub(crate) x1: &'a str,
    pub(crate) x2: &'a str,
}

/// Portal's published secp256k1 vector (eject.js).
pub(crate) const SECP: Numbers<'static> = Numbers {
    pub_x: "95905857107301357381155516338362784207317010673073787675690511286760317802272",
    pub_y: "84471157200556546968836560278865290072494471108462199268947632974788956557127",
    s1: "20239155973571792266164364275964524242029729063304656485165418448115248082802",
    s2: "35548699788994050550146262427737959890227338646889173786783560192790230768775",
    x1: "86868548274168401139460440216870783092063038666835278534832349302396154314237",
    x2: "18215211649252066570518778981645428771794111974791698622992184423457425369616",
};

/// Portal's published ed25519 vector (eject.js).
pub(crate) const ED: Numbers<'static> = Numbers {
    pub_x: "4155079341668263211468645490523568285081269952458706525782542662765297681720",
    pub_y: "33170931963135572976162508038363263257341896290508808710058213404228890998925",
    s1: "209966714242237444698175757090286175213972386782216686905361352132244887465",
    s2: "3972754397714006467384117681683827603947104866080154044667201466825208338771",
    x1: "674076495015830984277819692722227700482715353628168867159273906537386870716",
    x2: "4645588044633541551475641810441554672302500022056130044324874662839150929177",
};

/// The client share `MpcShare` JSON, Portal's SDK spelling (`X`, `Rank`).
pub(crate) fn client_json(n: &Numbers<'_>, pair: &str) -> String {
    json!({
        "clientId": "cl_vec",
        "backupSharePairId": pair,
        "share": n.s1,
        "ssid": "c3NpZA",
        "pubkey": {"X": n.pub_x, "Y": n.pub_y},
        "bks": {"client": {"X": n.x1, "Rank": 0}, "server": {"X": n.x2, "Rank": 0}}
    })
    .to_string()
}

/// The client share as Portal's example code spells it (`x`, `y`, `rank`).
pub(crate) fn client_json_lowercase(n: &Numbers<'_>, pair: &str) -> String {
    json!({
        "clientId": "cl_vec",
        "backupSharePairId": pair,
        "share": n.s1,
        "pubkey": {"x": n.pub_x, "y": n.pub_y},
        "bks": {"client": {"x": n.x1, "rank": 0}, "server": {"x": n.x2, "rank": 0}}
    })
    .to_string()
}

/// The flat custodian share JSON.
pub(crate) fn custodian_json(n: &Numbers<'_>, pair: &str) -> String {
    json!({
        "backupSharePairId": pair,
        "clientBk": n.x1,
        "clientId": "cl_vec",
        "serverBk": n.x2,
        "share": n.s2,
        "x": n.pub_x,
        "y": n.pub_y,
        "pailler_p": "7",
    })
    .to_string()
}

/// A deterministic byte source from a seed (Keccak in counter mode).
pub(crate) fn byte_source(seed: [u8; 32]) -> impl FnMut(&mut [u8]) {
    let mut counter: u64 = 0;
    move |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(32) {
            counter = counter.wrapping_add(1);
            let mut h = Keccak256::new();
            h.update(seed);
            h.update(counter.to_le_bytes());
            let block = h.finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}
