//! `mattermost_send_file`: a file from the project into the calling
//! session's Mattermost thread, only after the checks in
//! [`crate::files::safety`].

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Tool, ToolError, ToolOutput, parse_args, schema_of};
use crate::agent::{Agent, calling_session};
use crate::files::outbound::{Project, SendError, SendRequest, send_file};
use crate::files::safety::size_text;
use crate::rpc::protocol::CallContext;

/// Arguments of `mattermost_send_file`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendFileArgs {
    /// The file to send: a path relative to the session's directory, or an
    /// absolute path. It must be a regular file inside the project (the
    /// session's directory or worktree) or the session's temporary directory
    /// (where files attached in chat are saved), within the size limit.
    pub path: String,
    /// Text posted with the file; the file's name when left out.
    #[serde(default)]
    pub message: Option<String>,
    /// The root post id of the thread to post in; it must be a thread of this
    /// session. Leave it out to use the thread this session replies in.
    #[serde(default)]
    pub thread: Option<String>,
}

pub struct SendFileTool;

#[async_trait]
impl Tool for SendFileTool {
    fn name(&self) -> &'static str {
        "mattermost_send_file"
    }

    fn description(&self) -> &'static str {
        "Send a file (an image, a log, a report, a build artifact) into this session's \
         Mattermost thread, where the user sees it as an attachment. Only regular files inside \
         the project or the session's temporary directory can be sent, after symlinks and `..` \
         are resolved, up to the configured size limit; secrets such as .env files and private \
         keys never are. When a file is refused, the answer says why."
    }

    fn input_schema(&self) -> Value {
        schema_of::<SendFileArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        ctx: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: SendFileArgs = parse_args(self.name(), args)?;
        let session = calling_session(ctx).ok_or_else(|| failed(SendError::NoSession))?;
        let request = SendRequest {
            path: args.path,
            message: args.message,
            thread: args.thread,
        };
        let bridge = agent
            .bridge()
            .map_err(|why| failed(SendError::NoBridge(why)))?;
        let init = agent.init_info().unwrap_or_default();
        let project = Project {
            directory: &init.directory,
            worktree: &init.worktree,
        };
        let sent = send_file(&bridge.engine.app, &project, session, &request)
            .await
            .map_err(failed)?;
        Ok(ToolOutput {
            text: format!(
                "Sent `{}` ({}) to the Mattermost thread {}.",
                sent.name,
                size_text(sent.size),
                sent.root_post_id
            ),
            title: Some(format!("Sent {} to Mattermost", sent.name)),
            metadata: Some(json!({
                "path": sent.path.display().to_string(),
                "size": sent.size,
                "fileId": sent.file_id,
                "postId": sent.post_id,
                "threadId": sent.root_post_id,
            })),
        })
    }
}

fn failed(e: SendError) -> ToolError {
    ToolError::Failed(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_strict_and_documented() {
        let ok: SendFileArgs = parse_args(
            "mattermost_send_file",
            json!({"path": "out/chart.png", "message": "the chart"}),
        )
        .unwrap();
        assert_eq!(ok.path, "out/chart.png");
        assert_eq!(ok.message.as_deref(), Some("the chart"));
        assert!(ok.thread.is_none());
        for bad in [
            json!({}),
            json!({"path": 3}),
            json!({"path": "a", "extra": 1}),
        ] {
            assert!(
                parse_args::<SendFileArgs>("mattermost_send_file", bad.clone()).is_err(),
                "{bad}"
            );
        }
        let schema = SendFileTool.input_schema();
        assert_eq!(schema["required"], json!(["path"]));
        for key in ["path", "message", "thread"] {
            assert!(
                schema["properties"][key]["description"].is_string(),
                "{key}: {schema}"
            );
        }
    }
}
