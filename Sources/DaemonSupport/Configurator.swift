#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FenceConfig

/// `fence-routerd -c` and `fencectl configure`: the configuration dialogue on the terminal (or on
/// piped answers), then the result shown, checked, and written only when the operator says yes.
public enum Configurator {
    /// Returns the exit status: 0 when the file was written, 1 otherwise (as `fence_virtd -c`).
    public static func run(path: String) -> Int32 {
        say("Using \(path)")
        // A missing file is asked about like an unreadable one, as fence_virtd -c does, so the
        // same piped answers fit both.
        var document: ConfigDocument
        do {
            document = try ConfigurationFile.load(path)
        } catch {
            say("\(error)")
            guard confirm("Start from scratch [y/N]? ") else { return 1 }
            document = ConfigDocument(file: path, items: [])
        }
        var dialogue = ConfigurationDialogue(editing: document)
        dialogue.run(ask: { question in
            if !question.explanation.isEmpty { say("\n\(question.explanation)\n") }
            return prompt("\(question.prompt) [\(question.defaultAnswer)]: ")
        }, tell: { say($0) })
        let text = dialogue.document.rendered()
        say("\nConfiguration complete.\n\n=== Begin Configuration ===\n\(text)=== End Configuration ===")
        do {
            _ = try DaemonConfigurations(document: ConfigDocument(parsing: text, file: path))
        } catch {
            say("Not written, the result is not valid: \(error)")
            return 1
        }
        guard confirm("Replace \(path) with the above [y/N]? ") else { return 1 }
        do {
            try ConfigurationFile.replace(path, with: text)
        } catch {
            say("\(error)")
            return 1
        }
        say("Wrote \(path).")
        return 0
    }

    private static func say(_ text: String) {
        print(text)
        fflush(nil)
    }

    /// The line typed, or nil at the end of the input (the caller keeps its default).
    private static func prompt(_ text: String) -> String? {
        print(text, terminator: "")
        fflush(nil)
        let line = readLine()
        // Piped answers are not echoed by a terminal: show them, so the transcript reads as a dialogue.
        if line == nil || isatty(0) == 0 { print(line ?? "") }
        return line
    }

    private static func confirm(_ question: String) -> Bool {
        guard let answer = prompt(question)?.lowercased() else { return false }
        return answer.hasPrefix("y")
    }
}
