import FenceBus

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
