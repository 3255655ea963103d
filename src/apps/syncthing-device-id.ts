// Syncthing device IDs: 52 base32 characters of a certificate hash, cut into four groups of 13,
// each followed by a Luhn mod 32 check character, shown as 8 groups of 7 joined by dashes.
// Mirrors Syncthing's lib/protocol/deviceid.go and luhn.go: letters may be lower case, and dashes
// and plain spaces may separate groups. Nothing else: a tab, a line break or a no-break space
// pasted along with an ID is refused, not silently dropped (spec §7).

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

function luhnBase32(group: string): string {
  let factor = 1;
  let sum = 0;
  for (const char of group) {
    const codepoint = ALPHABET.indexOf(char);
    let addend = factor * codepoint;
    factor = factor === 2 ? 1 : 2;
    addend = Math.floor(addend / 32) + (addend % 32);
    sum += addend;
  }
  return ALPHABET[(32 - (sum % 32)) % 32]!;
}

/** The ID without its separators, in upper case. */
const compactForm = (text: string) => text.replace(/[- ]/g, "").toUpperCase();

/** Why `text` is not a Syncthing device ID, or null when it is one. */
export function deviceIdProblem(text: string): string | null {
  const stray = /[^A-Za-z2-7 -]/u.exec(text);
  if (stray) {
    const codePoint = `U+${stray[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;
    return `not a Syncthing device ID: only the letters A-Z (either case), the digits 2-7 and '-' or ' ' between groups may appear; found ${codePoint} at position ${stray.index + 1}`;
  }
  const compact = compactForm(text);
  if (compact.length !== 56) {
    return "not a Syncthing device ID: expected 8 groups of 7 characters such as \"MFZWI3D-BONSGYC-YLTMRWG-C43ENR5-QXGZDMM-FZWI3DP-BONSGYY-LTMRWAD\"";
  }
  for (let i = 0; i < 4; i++) {
    const chunk = compact.slice(i * 14, i * 14 + 14);
    if (luhnBase32(chunk.slice(0, 13)) !== chunk[13]) {
      return `not a Syncthing device ID: check character ${i + 1} of 4 is wrong (a typing error?)`;
    }
  }
  return null;
}

/** Syncthing's own form of a valid ID: upper case, 8 groups of 7 joined by dashes. */
export function canonicalDeviceId(text: string): string {
  return compactForm(text).match(/.{1,7}/g)!.join("-");
}

/** A valid device ID for 52 base32 characters: used by tests and examples. */
export function withCheckCharacters(base: string): string {
  const groups = [0, 1, 2, 3].map((i) => {
    const part = base.slice(i * 13, i * 13 + 13);
    return part + luhnBase32(part);
  });
  return groups.join("").match(/.{7}/g)!.join("-");
}
