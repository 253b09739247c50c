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

  /** Milliseconds between folder listings while the gallery is visible. */
  get pollInterval(): number {
    return this._interval;
  }
  set pollInterval(ms: number) {
    this._interval = ms;
    if (this.isVisible) {
      this._props.model.startPolling(ms);
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
    this._props.model.startPolling(this._interval);
  }

  protected onBeforeHide(msg: Message): void {
    this._props.model.stopPolling();
    super.onBeforeHide(msg);
  }

  dispose(): void {
    this._props.model.stopPolling();
    super.dispose();
  }

  private _props: IGalleryProps;
  private _interval = 2000;
}
