import Routing

/// Checked bus messages the router sets aside, by reason: a host that sends many of them costs a
/// log line per reason and interval (`DropLog`), not a line each.
enum SetAside: Hashable, Sendable, CustomStringConvertible {
    /// Under a command's correlation id, but not that host's result for that command.
    case notThisResult
    /// An inventory message not applied.
    case inventory(Inventory.Ignored)

    var description: String {
        switch self {
        case .notThisResult: "not-this-result"
        case .inventory(let ignored): "inventory-\(ignored)"
        }
    }
}
