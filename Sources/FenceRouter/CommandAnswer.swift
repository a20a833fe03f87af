import FenceBus
import Routing

/// What answers a command sent to one host: that host's result for that command, and nothing else
/// that arrives under the command's correlation id — another host's result, a result for another
/// command, a message of another kind. Decided as each reply arrives; anything else leaves the
/// command waiting for its answer until its deadline.
enum CommandAnswer {
    static func result(of envelope: BusEnvelope, answering command: FenceCommand) -> CommandResult? {
        guard envelope.sender == command.host, case .result(let result) = envelope.message,
              result.commandID == command.id, result.host == command.host else { return nil }
        return result
    }
}

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
