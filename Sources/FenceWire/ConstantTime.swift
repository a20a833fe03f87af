/// Compares two byte strings in time that depends only on their lengths, so that a forger learns
/// nothing from how fast a wrong digest is refused (the reference uses `memcmp`).
@inline(never)
func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    var difference: UInt8 = 0
    for index in lhs.indices {
        difference |= lhs[index] ^ rhs[index]
    }
    return difference == 0
}
