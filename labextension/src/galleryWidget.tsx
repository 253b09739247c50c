/**
 * The gallery's sidebar widget: renders `Gallery` and polls the folder while it
 * is visible.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import React from 'react';

import { Gallery, IGalleryProps } from './components/Gallery';
import { WidgetIDs } from './tokens';

/** The paint gallery in the sidebar. */
export class GalleryWidget extends ReactWidget {
  constructor(props: IGalleryProps) {
    super();
    this._props = props;
    this.id = WidgetIDs.gallery;
    this.addClass('jp-sd-gallery-panel');
  }

  /**
   * Milliseconds between folder listings while the gallery is visible (from the
   * settings; `null`, the start value, means no polling, only manual refresh).
   */
  get pollInterval(): number | null {
    return this._interval;
  }
  set pollInterval(ms: number | null) {
    this._interval = ms;
    if (this.isVisible) {
      this._startPolling();
    }
  }

  /** Re-render with new properties (e.g. when a notebook opens or closes). */
  update(props?: Partial<IGalleryProps>): void {
    if (props) {
      this._props = { ...this._props, ...props };
    }
    super.update();
  }

  protected render(): JSX.Element {
    return <Gallery {...this._props} />;
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._startPolling();
  }

  protected onBeforeHide(msg: Message): void {
    this._props.model.stopPolling();
    super.onBeforeHide(msg);
  }

  dispose(): void {
    this._props.model.stopPolling();
    super.dispose();
  }

  private _startPolling(): void {
    if (this._interval === null) {
      this._props.model.stopPolling();
      void this._props.model.refresh();
    } else {
      this._props.model.startPolling(this._interval);
    }
  }

  private _props: IGalleryProps;
  private _interval: number | null = null;
}
